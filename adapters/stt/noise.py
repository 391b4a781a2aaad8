"""Noise suppression of input speech: noisereduce's spectral gating (stationary: a threshold per
frequency band, set from the noise's level in that band), before transcription and before the
realtime endpoint's server VAD hears the audio.

The noise is what the quietest tenth of the audio's 20 ms frames hold: noisereduce's own estimate
(the whole clip's level in each band) puts the threshold over anything sounding for much of the
clip, a held vowel or a tone, and gates it out with the noise.

A whole recording is gated at once (`suppress_noise`). A live stream is gated block by block
(`NoiseGate`): each 100 ms block with the 500 ms of input before it, so that the block's start is
not a cut edge, the noise taken from the last 3 s; what comes out is the block alone, 100 ms at most
behind what came in. It costs some 25 ms of one core per second of 24 kHz audio. Synchronous and
CPU-bound: callers run it in a thread or a worker process.
"""

from __future__ import annotations

import numpy as np

_N_FFT = 512
# The gate's mask is smoothed over this much of the spectrum: noisereduce's 500 Hz spans several
# harmonics of a voice and takes a quarter of its level with the noise; 100 Hz keeps it whole.
_FREQ_SMOOTH_HZ = 100
# noisereduce pads each chunk it filters with this many samples; its default, 30000, costs 50 ms a call.
_PADDING = 1024
_CONTEXT_S = 0.5
_BLOCK_S = 0.1
_NOISE_HISTORY_S = 3.0
_FRAME_S = 0.02
_NOISE_SHARE = 0.1


def noise_profile(samples: np.ndarray, rate: int) -> np.ndarray:
    """The quietest tenth of `samples`' 20 ms frames (at least three), end to end."""
    frame = max(1, int(_FRAME_S * rate))
    count = len(samples) // frame
    if count < 3:
        return samples
    frames = samples[: count * frame].reshape(count, frame)
    quietest = np.argsort(np.mean(frames * frames, axis=1))[: max(3, int(count * _NOISE_SHARE))]
    return frames[np.sort(quietest)].reshape(-1)


def suppress_noise(
    samples: np.ndarray, rate: int, strength: float = 1.0, *, noise: np.ndarray | None = None
) -> np.ndarray:
    """Mono float32 samples with their steady noise gated out; `strength` (0..1) is how much of
    the noise goes (noisereduce's `prop_decrease`); `noise`, a clip of the noise alone (else the
    quietest frames of `samples`)."""
    if len(samples) < _N_FFT or strength <= 0:
        return samples
    # Imported at first use: noisereduce imports torch and scipy.signal, which were half of the
    # gateway's start-up time (70 s on a loaded 2-core host, longer than a readiness wait), and a
    # gateway with noise suppression off never needs them.
    import noisereduce

    out = noisereduce.reduce_noise(
        samples,
        rate,
        stationary=True,
        y_noise=noise_profile(samples, rate) if noise is None else noise,
        prop_decrease=strength,
        n_fft=_N_FFT,
        freq_mask_smooth_hz=_FREQ_SMOOTH_HZ,
        padding=_PADDING,
    )
    return np.asarray(out, dtype=np.float32)


class NoiseGate:
    """pcm16 (mono, little-endian) at `rate` with its noise suppressed, as it arrives, in blocks of
    100 ms; `flush` gates what is left of a last block."""

    def __init__(self, rate: int, strength: float = 1.0) -> None:
        self.rate = rate
        self.strength = strength
        self._block = int(_BLOCK_S * rate)
        self._context = int(_CONTEXT_S * rate)
        self._kept = int(_NOISE_HISTORY_S * rate)
        self._history = np.zeros(0, np.float32)  # input already gated, as it came: context and noise
        self._pending = np.zeros(0, np.float32)  # input not yet gated
        self._odd = b""

    def __call__(self, pcm: bytes) -> bytes:
        data, self._odd = self._odd + pcm, b""
        if len(data) % 2:
            data, self._odd = data[:-1], data[-1:]
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        whole = len(self._pending) - len(self._pending) % self._block
        if not whole:
            return b""
        return self._gate(whole)

    def flush(self) -> bytes:
        return self._gate(len(self._pending)) if len(self._pending) else b""

    def _gate(self, count: int) -> bytes:
        block, self._pending = self._pending[:count], self._pending[count:]
        seen = np.concatenate([self._history, block])
        window = seen[-(len(block) + self._context) :]
        noise = noise_profile(seen, self.rate)
        gated = suppress_noise(window, self.rate, self.strength, noise=noise)[len(window) - len(block) :]
        self._history = seen[-self._kept :]
        return (np.clip(gated, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
