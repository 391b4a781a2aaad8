"""Loudness normalisation of spoken audio: integrated loudness (ITU-R BS.1770, as EBU R128 measures
it) brought to a target with pyloudnorm's meter, under a true-peak limiter so that the gain never
clips.

eSpeak NG speaks at about -20 LUFS with peaks near -2 dBFS, and each voice and backend at a level of
its own; normalising makes every voice, backend and sentence equally loud. Speech is peaky, so a
plain gain to -16 LUFS would clip: the limiter pulls the peaks under the ceiling (measured on a 4x
oversampled signal, so the peaks between samples count too), and the gain is then corrected for what
the limiter took, up to three times, so the result stays within a fraction of a LU of the target.

Synchronous and CPU-bound (a few milliseconds a sentence); the synthesizer calls it in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from adapters.tts.audio import SpokenPcm

_BLOCK_S = 0.4  # BS.1770's gating block
_MIN_S = 0.05  # shorter than this is not measured, and left as it is
_OVERSAMPLE = 4  # true peak: BS.1770-4 Annex 2 measures at 4x the rate (above 48 kHz, less)
_LIMITER_S = 0.005  # the limiter's attack, lookahead and release, each
_PASSES = 3


@dataclass(frozen=True)
class Loudness:
    """Where speech is brought to: `target_lufs` integrated, no peak above `ceiling_dbtp`, and
    never more than `max_gain_db` of gain (a near-silent sentence is not blown up into noise)."""

    target_lufs: float = -16.0
    ceiling_dbtp: float = -1.0
    max_gain_db: float = 30.0


def integrated_lufs(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness of mono float samples in [-1, 1], in LUFS; -inf for silence. Audio
    shorter than one 400 ms block is measured as one block of its own length."""
    seconds = len(samples) / rate
    if seconds < _MIN_S:
        return float("-inf")
    import pyloudnorm  # here: it pulls scipy.signal, 1.1 s of the gateway's start otherwise

    meter = pyloudnorm.Meter(rate, block_size=min(_BLOCK_S, seconds))
    return float(meter.integrated_loudness(samples.astype(np.float64)))


def true_peaks(samples: np.ndarray, rate: int) -> np.ndarray:
    """Each sample's magnitude or the largest between it and the next (4x oversampled), whichever
    is larger: what a reconstructing DAC (or a resampler after us) will reach around it."""
    magnitude = np.abs(samples)
    if len(samples) < 2:
        return magnitude
    size = len(samples) * _OVERSAMPLE
    up = np.abs(soxr.resample(samples, rate, rate * _OVERSAMPLE, quality="HQ"))[:size]
    up = np.pad(up, (0, size - len(up)))
    return np.maximum(magnitude, up.reshape(-1, _OVERSAMPLE).max(axis=1))


def limit(samples: np.ndarray, rate: int, ceiling: float) -> np.ndarray:
    """`samples` with every true peak at or under `ceiling` (linear): a gain that dips smoothly
    around each peak over it and is 1 elsewhere.

    The gain each sample needs is spread to its neighbours (a minimum over 2w+1 samples) then
    smoothed (a mean over w+1): every mean is over values no higher than what the centre needed, so
    no sample ends over the ceiling, and the gain changes over milliseconds, not at a sample."""
    peaks = true_peaks(samples, rate)
    if not len(peaks) or peaks.max() <= ceiling:
        return samples
    from scipy.ndimage import minimum_filter1d, uniform_filter1d  # here: scipy at first use only

    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    width = max(1, int(_LIMITER_S * rate))
    gain = uniform_filter1d(
        minimum_filter1d(needed, 2 * width + 1, mode="nearest"), width + 1, mode="nearest"
    )
    return (samples * np.minimum(gain, needed)).astype(np.float32)


def normalize(pcm: SpokenPcm, loudness: Loudness) -> SpokenPcm:
    """`pcm` at `loudness.target_lufs` integrated, limited to `loudness.ceiling_dbtp`. Silence, and
    audio too short to measure, are returned as they are."""
    samples = np.frombuffer(pcm.data, dtype="<i2").astype(np.float32) / 32768.0
    measured = integrated_lufs(samples, pcm.rate)
    if not np.isfinite(measured):
        return pcm
    ceiling = 10 ** (loudness.ceiling_dbtp / 20)
    total_db, out = 0.0, samples
    for _ in range(_PASSES):
        step_db = min(loudness.target_lufs - measured, loudness.max_gain_db - total_db)
        if abs(step_db) < 0.05:
            break
        total_db += step_db
        out = limit(out * np.float32(10 ** (step_db / 20)), pcm.rate, ceiling)
        measured = integrated_lufs(out, pcm.rate)
    pcm16 = np.clip(np.round(out * 32768.0), -32768, 32767).astype("<i2")
    return SpokenPcm(pcm16.tobytes(), pcm.rate)
