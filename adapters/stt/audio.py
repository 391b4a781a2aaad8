"""Audio in any common container (wav, mp3, ogg/opus, flac, webm, m4a) decoded with PyAV and
resampled to what Whisper takes: 16 kHz mono float32 in [-1, 1].

What is in a file is decided by its bytes (FFmpeg probes them), never by its name or claimed type.
A length over the limit is refused from the container's declared duration before decoding, and
again while decoding for a file that declares none (or lies).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from adapters.errors import MediaError

SAMPLE_RATE = 16_000
"""Whisper's input rate."""


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at 16 kHz."""

    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def has_audio(data: bytes) -> bool:
    """Whether `data` is a container with an audio stream (a video's soundtrack), from its header."""
    try:
        with av.open(io.BytesIO(data)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, ValueError, OSError):
        return False


def decode_audio(data: bytes, *, param: str | None = None, max_seconds: float | None = None) -> DecodedAudio:
    """Decode the first audio stream of `data` to 16 kHz mono float32. MediaError: `invalid_audio`
    (not audio, corrupt, no samples), `audio_too_long` (over `max_seconds`)."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(
            param, f"This is not an audio file that can be decoded ({_reason(exc)}).", code="invalid_audio"
        ) from None
    try:
        if not container.streams.audio:
            raise MediaError(param, "This file has no audio stream.", code="invalid_audio")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        if max_seconds is not None and declared > max_seconds:
            raise _too_long(param, declared, max_seconds)
        limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) + SAMPLE_RATE // 10
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        count = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                count += len(chunk)
            if limit is not None and count > limit:
                raise _too_long(param, count / SAMPLE_RATE, max_seconds or 0.0)
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(param, f"This audio is corrupt ({_reason(exc)}).", code="invalid_audio") from None
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if not len(samples):
        raise MediaError(param, "This audio file holds no samples.", code="invalid_audio")
    return DecodedAudio(np.clip(samples, -1.0, 1.0))


class PcmResampler:
    """Raw 16-bit little-endian mono PCM at `rate` (the Realtime API's pcm16 is 24 kHz) to 16 kHz
    float32, chunk by chunk: the filter state carries over, so chunk borders make no clicks."""

    def __init__(self, rate: int = 24_000) -> None:
        self.rate = rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._odd = b""
        self._pts = 0

    def feed(self, data: bytes) -> np.ndarray:
        data, self._odd = self._odd + data, b""
        if len(data) % 2:
            data, self._odd = data[:-1], data[-1:]
        if not data:
            return np.zeros(0, np.float32)
        samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.float32)


def pcm16_to_pcm(data: bytes, rate: int = 24_000) -> DecodedAudio:
    """A whole buffer of 16-bit mono PCM at `rate` as 16 kHz float32."""
    resampler = PcmResampler(rate)
    return DecodedAudio(np.concatenate([resampler.feed(data), resampler.flush()]))


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _too_long(param: str | None, seconds: float, limit: float) -> MediaError:
    return MediaError(
        param,
        f"This audio lasts {seconds:.1f} s; at most {limit:g} s of audio are accepted.",
        code="audio_too_long",
    )


def _reason(exc: BaseException) -> str:
    # FFmpeg's own words ("Invalid data found when processing input"), without errno and file name.
    reason = getattr(exc, "strerror", None) or str(exc)
    return str(reason).strip() or type(exc).__name__
