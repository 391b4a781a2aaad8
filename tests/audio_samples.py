"""Spoken audio for tests, made here by eSpeak NG (Debian's espeak-ng) with no downloads: a sentence
as a file in a common format, and eSpeak's own length for a text, to compare synthesised audio with.

Shared by the text-to-speech and speech-to-text tests; it uses the espeak-ng command and PyAV only,
not Tantra's own speech code, so it can check that code.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import cast

import av
import pytest

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

ESPEAK_RATE = 22_050
SENTENCE = "The quick brown fox jumps over the lazy dog."

# format -> (container, codec, sample rate)
_FORMATS = {
    "mp3": ("mp3", "libmp3lame", 22_050),
    "ogg": ("ogg", "libopus", 48_000),
    "opus": ("ogg", "libopus", 48_000),
    "webm": ("webm", "libopus", 48_000),
    "flac": ("flac", "flac", 22_050),
    "m4a": ("mp4", "aac", 22_050),
    "aac": ("adts", "aac", 22_050),
}


def espeak_wav(text: str, *, voice: str = "en-us", wpm: int = 175) -> bytes:
    """eSpeak NG's WAV of `text` (22.05 kHz, 16-bit mono), with its header's sizes filled in."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path)],
            input=text.encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        return path.read_bytes()


def espeak_seconds(text: str, *, voice: str = "en-us", speed: float = 1.0) -> float:
    """How long eSpeak NG speaks `text` at `speed` (175 words per minute is 1.0)."""
    return duration(espeak_wav(text, voice=voice, wpm=round(175 * speed)))


def spoken_sentence(text: str = SENTENCE, fmt: str = "wav", *, voice: str = "en-us") -> bytes:
    """`text` spoken by eSpeak NG as a file in `fmt`: wav, mp3, ogg/opus, webm, flac, m4a or aac."""
    wav = espeak_wav(text, voice=voice)
    if fmt == "wav":
        return wav
    container, codec, rate = _FORMATS[fmt]
    with tempfile.TemporaryDirectory() as folder:
        # A real file: mp4 writes its index at the end, which needs seeking.
        path = Path(folder) / f"speech.{fmt}"
        with (
            av.open(io.BytesIO(wav), mode="r") as source,
            av.open(str(path), "w", format=container) as output,
        ):
            stream = cast(av.AudioStream, output.add_stream(codec, rate=rate))
            stream.layout = "mono"
            resampler = av.AudioResampler(
                format=stream.codec_context.format.name,
                layout="mono",
                rate=rate,
                frame_size=stream.codec_context.frame_size or None,
            )
            for frame in [*source.decode(audio=0), None]:
                for converted in resampler.resample(frame):
                    output.mux(stream.encode(converted))
            output.mux(stream.encode(None))
        return path.read_bytes()


def decode(data: bytes) -> tuple[float, int, int]:
    """(seconds, sample rate, channels) of an audio file, decoded to its end with PyAV."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        samples = 0
        rate = channels = 0
        for frame in container.decode(stream):
            samples += frame.samples
            rate, channels = frame.sample_rate, len(frame.layout.channels)
        return samples / rate, rate, channels


def duration(data: bytes) -> float:
    return decode(data)[0]


def decoded_rms(data: bytes) -> float:
    """The RMS level (full scale 1.0) of an audio file, decoded to its end with PyAV."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        total, count = 0.0, 0
        for frame in container.decode(stream):
            samples = frame.to_ndarray().astype("float64")
            if frame.format.name.startswith("s16"):
                samples /= 32768.0
            total += float((samples**2).sum())
            count += samples.size
        return (total / count) ** 0.5 if count else 0.0
