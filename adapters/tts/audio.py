"""Speech audio as it leaves Tantra: 16-bit mono PCM at 24 kHz (OpenAI's output rate), resampled from
whatever a backend makes (libsoxr, high quality), and encoded incrementally into each response format
with PyAV's encoders.

Everything here is synchronous and CPU-bound; the synthesizer calls it in a worker thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol, cast

import av
import av.filter

from adapters.tts.resample import PcmResampler

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes: signed 16-bit little-endian, mono

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
RESPONSE_FORMATS: tuple[AudioFormat, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")

CONTENT_TYPES: dict[AudioFormat, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@dataclass(frozen=True)
class SpokenPcm:
    """Mono signed 16-bit little-endian samples at `rate` Hz."""

    data: bytes
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.data) / SAMPLE_WIDTH / self.rate


def _frame(pcm: SpokenPcm) -> av.AudioFrame:
    samples = len(pcm.data) // SAMPLE_WIDTH
    frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
    frame.planes[0].update(pcm.data[: samples * SAMPLE_WIDTH])
    frame.sample_rate = pcm.rate
    return frame


def _bytes(frames: list[av.AudioFrame]) -> bytes:
    return b"".join(bytes(f.planes[0])[: f.samples * SAMPLE_WIDTH] for f in frames)


class Resampler:
    """One stream's conversion to 24 kHz (libsoxr, high quality; resample.py); kept across its
    sentences so no sample is lost at a seam."""

    def __init__(self) -> None:
        self._resampler: PcmResampler | None = None

    def convert(self, pcm: SpokenPcm) -> bytes:
        if pcm.rate == SAMPLE_RATE or not pcm.data:
            return pcm.data
        out = b""
        if self._resampler is None or pcm.rate != self._resampler.source:
            out = self.flush()
            self._resampler = PcmResampler(pcm.rate, SAMPLE_RATE)
        return out + self._resampler(pcm.data[: len(pcm.data) - len(pcm.data) % SAMPLE_WIDTH])

    def flush(self) -> bytes:
        if self._resampler is None:
            return b""
        resampler, self._resampler = self._resampler, None
        return resampler.flush()


def change_tempo(pcm: SpokenPcm, tempo: float) -> SpokenPcm:
    """The same speech `tempo` times as fast, pitch kept (FFmpeg's atempo; 0.5 to 100 per pass)."""
    if abs(tempo - 1.0) < 1e-3 or not pcm.data:
        return pcm
    graph = av.filter.Graph()
    source = graph.add_abuffer(
        format="s16", sample_rate=pcm.rate, layout="mono", time_base=Fraction(1, pcm.rate)
    )
    chain = source
    remaining = tempo
    while remaining < 0.5 or remaining > 100:
        step = 0.5 if remaining < 0.5 else 100.0
        node = graph.add("atempo", str(step))
        chain.link_to(node)
        chain, remaining = node, remaining / step
    last = graph.add("atempo", f"{remaining:.6f}")
    chain.link_to(last)
    sink = graph.add("abuffersink")
    last.link_to(sink)
    graph.configure()
    frame = _frame(pcm)
    frame.pts = 0
    frame.time_base = Fraction(1, pcm.rate)
    source.push(frame)
    source.push(None)
    frames: list[av.AudioFrame] = []
    while True:
        try:
            frames.append(cast(av.AudioFrame, sink.pull()))
        except (av.BlockingIOError, av.EOFError):
            break
    return SpokenPcm(_bytes(frames), pcm.rate)


class Encoder(Protocol):
    """Turns 24 kHz PCM into a response format's bytes, as it arrives."""

    def encode(self, pcm: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def encoder(response_format: AudioFormat) -> Encoder:
    if response_format == "pcm":
        return _Raw()
    if response_format == "wav":
        return _Wav()
    return _Container(*_CONTAINERS[response_format])


class _Raw:
    def encode(self, pcm: bytes) -> bytes:
        return pcm

    def finish(self) -> bytes:
        return b""


class _Wav:
    """A WAV whose header is sent before its length is known: RIFF and data sizes of 0xFFFFFFFF,
    as OpenAI's streamed WAV has; decoders read to the end of the stream."""

    def __init__(self) -> None:
        self._started = False

    def encode(self, pcm: bytes) -> bytes:
        if self._started:
            return pcm
        self._started = True
        return wav_header() + pcm

    def finish(self) -> bytes:
        return b"" if self._started else wav_header()


def wav_header(data_bytes: int = 0xFFFFFFFF) -> bytes:
    """A 44-byte header for 24 kHz 16-bit mono; the default size means 'until the stream ends'."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    byte_rate = SAMPLE_RATE * SAMPLE_WIDTH
    return (
        struct.pack("<4sI4s", b"RIFF", riff, b"WAVE")
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, SAMPLE_RATE, byte_rate, SAMPLE_WIDTH, 16)
        + struct.pack("<4sI", b"data", data_bytes)
    )


# response format -> (container, codec, muxer options). No seek on the output: headers that would
# be rewritten at the end (FLAC's total, an MP3 Xing frame) are left as a stream has them.
_CONTAINERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp3": ("mp3", "libmp3lame", {}),
    # Ogg pages are flushed every 100 ms of audio rather than every second: speech reaches the
    # client as it is made.
    "opus": ("ogg", "libopus", {"page_duration": "100000"}),
    "aac": ("adts", "aac", {}),
    "flac": ("flac", "flac", {}),
}


class _Sink:
    """A write-only file for the muxer; what it wrote is taken after each step."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _Container:
    def __init__(self, container: str, codec: str, options: dict[str, str]) -> None:
        self._sink = _Sink()
        # A small I/O buffer, so the muxer hands bytes over as soon as a packet is written.
        self._output = av.open(self._sink, mode="w", format=container, buffer_size=2048, options=options)
        self._stream = cast(av.audio.AudioStream, self._output.add_stream(codec, rate=SAMPLE_RATE))
        self._stream.layout = "mono"
        context = self._stream.codec_context
        self._to_codec = av.AudioResampler(
            format=context.format.name,
            layout="mono",
            rate=SAMPLE_RATE,
            frame_size=context.frame_size or None,
        )
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        if pcm:
            frame = _frame(SpokenPcm(pcm, SAMPLE_RATE))
            frame.pts = self._pts
            self._pts += frame.samples
            self._mux(self._to_codec.resample(frame))
        return self._sink.take()

    def finish(self) -> bytes:
        self._mux(self._to_codec.resample(None))
        for packet in self._stream.encode(None):
            self._output.mux(packet)
        self._output.close()
        return self._sink.take()

    def _mux(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._output.mux(packet)
