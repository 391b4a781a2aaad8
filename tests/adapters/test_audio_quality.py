"""Audio quality, measured: speech brought to its loudness target under the true-peak ceiling,
libsoxr's resampling against PyAV's (the path it replaced), and noise suppression of input audio
(whole and streamed).
The realtime VAD's accuracy on noisy speech is tests/gateway/realtime/test_realtime_noisy_vad.py;
the loudness of /v1/audio/speech as a client receives it is in tests/gateway/services/test_speech.py."""

from __future__ import annotations

import av
import numpy as np
import pytest

from adapters.stt.noise import NoiseGate, suppress_noise
from adapters.tts import SAMPLE_RATE, EspeakBackend, Loudness, SpokenPcm, Synthesizer
from adapters.tts.audio import Resampler
from adapters.tts.loudness import integrated_lufs, normalize, true_peaks
from adapters.tts.resample import PcmResampler
from tests.audio import voice_like
from tests.audio_samples import needs_espeak

TEXTS = (
    "Hello there.",
    "The quick brown fox jumps over the lazy dog. Is it raining in Paris today? Yes, it is!",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
)


def floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def dbfs(linear: float) -> float:
    return float(20 * np.log10(linear))


@needs_espeak
@pytest.mark.parametrize("target", [-16.0, -23.0])
async def test_speech_is_brought_to_its_loudness_under_the_ceiling(target: float) -> None:
    synthesizer = Synthesizer([EspeakBackend()], loudness=Loudness(target, ceiling_dbtp=-1.0))
    for voice, text in zip(("alloy", "onyx", "de"), TEXTS, strict=True):
        samples = floats(b"".join([chunk async for chunk in synthesizer.stream_pcm(text, voice)]))
        # Each sentence at the target, so the whole as well (the pauses are gated out of both).
        assert integrated_lufs(samples, SAMPLE_RATE) == pytest.approx(target, abs=0.5), (voice, text)
        assert dbfs(true_peaks(samples, SAMPLE_RATE).max()) <= -1.0 + 0.1


def test_normalize_limits_a_peaky_signal_and_leaves_silence_alone() -> None:
    rate = 22_050
    t = np.arange(rate * 2) / rate
    # A quiet tone with loud clicks: a plain gain to -16 LUFS would put the clicks far over 0 dBFS.
    signal = 0.02 * np.sin(2 * np.pi * 300 * t)
    signal[:: rate // 4] = 0.9
    pcm = SpokenPcm((signal * 32767).astype("<i2").tobytes(), rate)
    out = floats(normalize(pcm, Loudness(-16.0)).data)
    assert integrated_lufs(out, rate) == pytest.approx(-16.0, abs=0.5)
    assert dbfs(true_peaks(out, rate).max()) <= -1.0 + 0.1
    silent = SpokenPcm(bytes(rate), rate)
    assert normalize(silent, Loudness()) == silent
    short = SpokenPcm(b"\x10\x00" * 100, rate)  # 5 ms: not measured
    assert normalize(short, Loudness()) == short


def _old_resample(samples: np.ndarray, source: int, target: int) -> np.ndarray:
    """PyAV's libswresample with its defaults: the speech output's resampler before libsoxr."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = source
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


def _new_resample(samples: np.ndarray, source: int, target: int) -> np.ndarray:
    """The speech output's resampler, fed in eSpeak-sized odd chunks."""
    resampler = Resampler()
    data = samples.tobytes()
    out = b"".join(
        resampler.convert(SpokenPcm(data[i : i + 2 * 4001], source)) for i in range(0, len(data), 8002)
    )
    return np.frombuffer(out + resampler.flush(), dtype="<i2")


def _spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    middle = samples[len(samples) // 4 : -len(samples) // 4].astype(np.float64)
    magnitude = np.abs(np.fft.rfft(middle * np.blackman(len(middle))))
    return np.fft.rfftfreq(len(middle), 1 / rate), magnitude


@pytest.mark.parametrize("frequency", [1000.0, 10_500.0])
def test_a_sine_keeps_its_frequency_with_little_aliasing(frequency: float) -> None:
    """eSpeak's 22.05 kHz to 24 kHz: the tone comes out at its frequency, and nothing else within
    80 dB of it (at 1 kHz both paths reach 16-bit's floor). Near the top of the band PyAV's default
    filter let through the tone's image (at 22050 - 10500 = 11550 Hz) only some 11 dB down."""
    source = 22_050
    t = np.arange(source * 2) / source
    tone = (0.5 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    spurs = {}
    for name, resample in (("old", _old_resample), ("new", _new_resample)):
        out = resample(tone, source, SAMPLE_RATE)
        assert len(out) == pytest.approx(2 * SAMPLE_RATE, abs=4), name
        freqs, magnitude = _spectrum(out, SAMPLE_RATE)
        assert freqs[np.argmax(magnitude)] == pytest.approx(frequency, abs=2), name
        spurs[name] = dbfs(magnitude[np.abs(freqs - frequency) > 100].max() / magnitude.max())
    assert spurs["new"] < -80, spurs
    assert spurs["new"] <= spurs["old"] + 1, spurs
    if frequency > 10_000:
        assert spurs["old"] > -20, spurs  # what the old path left


def test_downsampling_to_g711_rate_removes_what_8_khz_cannot_hold() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tones = 0.4 * np.sin(2 * np.pi * 1000 * t) + 0.4 * np.sin(
        2 * np.pi * 6000 * t
    )  # 6 kHz would alias to 2 kHz
    resampler = PcmResampler(SAMPLE_RATE, 8000)
    data = (tones * 32767).astype("<i2").tobytes()
    out = np.frombuffer(
        b"".join(resampler(data[i : i + 960]) for i in range(0, len(data), 960)) + resampler.flush(), "<i2"
    )
    assert len(out) == 8000
    freqs, magnitude = _spectrum(out, 8000)
    alias = magnitude[np.abs(freqs - 2000) < 20].max()
    assert dbfs(alias / magnitude.max()) < -80


def _noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)


def test_suppression_removes_steady_noise_and_keeps_a_voice() -> None:
    rate = 16_000
    voice = np.concatenate([np.zeros(rate, np.float32), voice_like(2.0, rate)])  # silence, then a voice
    noisy = (voice + 0.01 * _noise(3, rate)).astype(np.float32)
    out = suppress_noise(noisy, rate)
    assert dbfs(np.std(out[: rate // 2]) / np.std(noisy[: rate // 2])) < -15  # the noise alone: mostly gone
    assert np.std(out[rate:]) / np.std(voice[rate:]) == pytest.approx(1.0, abs=0.1)  # the voice: kept
    assert np.corrcoef(out[rate:], voice[rate:])[0, 1] > 0.99


def test_the_noise_gate_streams_block_by_block() -> None:
    gate = NoiseGate(SAMPLE_RATE)
    data = (0.01 * _noise(1.0, SAMPLE_RATE) * 32767).astype("<i2").tobytes()
    pieces = [gate(data[i : i + 961]) for i in range(0, len(data), 961)]  # odd sizes
    out = b"".join(pieces) + gate.flush()
    assert len(out) == len(data)  # every sample, none lost at the odd cuts
    assert max(len(p) for p in pieces) <= 2 * SAMPLE_RATE // 10 * 2  # a block or so at a time
    assert dbfs(np.std(floats(out)[SAMPLE_RATE // 2 :]) / np.std(floats(data))) < -15
