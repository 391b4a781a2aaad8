"""Test audio made here, without a speech synthesiser: a voice-like signal (a gliding tone with
harmonics and a syllable rhythm) encoded by PyAV into each container the gateway takes."""

from __future__ import annotations

import io
from typing import cast

import av
import numpy as np

# (container, codec, codec sample rate) for each format a client may upload.
FORMATS: dict[str, tuple[str, str, int | None]] = {
    "wav": ("wav", "pcm_s16le", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg": ("ogg", "libopus", 48_000),
    "flac": ("flac", "flac", None),
    "webm": ("webm", "libopus", 48_000),
    "m4a": ("ipod", "aac", None),
}
MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "webm": "audio/webm",
    "m4a": "audio/mp4",
}


def voice_like(seconds: float = 2.0, rate: int = 24_000) -> np.ndarray:
    """Float samples in [-1, 1]: a 120-220 Hz glide with harmonics, opened and closed 4 times a second."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 100 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * (t < seconds - 0.05)
    return (0.25 * voice * envelope).astype(np.float32)


def encode(samples: np.ndarray, fmt: str, rate: int = 24_000) -> bytes:
    container, codec, codec_rate = FORMATS[fmt]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = cast(av.AudioStream, out.add_stream(codec, rate=codec_rate or rate, layout="mono"))
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def speech_file(fmt: str = "wav", seconds: float = 2.0) -> bytes:
    return encode(voice_like(seconds), fmt)
