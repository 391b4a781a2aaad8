"""G.711 audio for /v1/realtime: mu-law (`g711_ulaw`, GA `audio/pcmu`) and a-law (`g711_alaw`, GA
`audio/pcma`), 8 kHz mono, one byte a sample, as telephony sends it.

The session itself works in pcm16 at 24 kHz, so input is decoded and resampled up as it is
appended, and output resampled down and encoded as it is sent. The companding is done with numpy
lookup tables built once from the G.711 formulas rather than with the stdlib's `audioop`, which
is deprecated and removed in Python 3.13 (the unit tests check the tables against `audioop` while
it exists). Both resamplers are stateful, so that chunk edges do not click: output goes through
libsoxr's high-quality filter (adapters/tts/resample.py; it holds some 20 ms, given back when a
response's audio ends), input through PyAV's libswresample, which holds almost nothing, so server VAD
and a commit see all that was appended.
"""

from __future__ import annotations

from typing import Literal

import av
import numpy as np

from adapters.tts import SAMPLE_RATE
from adapters.tts.resample import PcmResampler

Format = Literal["pcm16", "g711_ulaw", "g711_alaw"]
G711_RATE = 8000
_BIAS = 0x84


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _segment(value: np.ndarray) -> np.ndarray:
    """The G.711 segment (exponent, 0..7) of magnitudes already shifted to 8 bits of range."""
    return np.minimum(np.floor(np.log2(np.maximum(value, 1))).astype(np.int32), 7)


def _ulaw_encode_table() -> np.ndarray:
    # The 14-bit formulation of the ITU reference code (and of audioop), rounding included.
    x = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + (_BIAS >> 2)
    ends = np.array([(0x40 << i) - 1 for i in range(8)], dtype=np.int32)
    segment = (magnitude[:, None] > ends[None, :]).sum(axis=1)
    value = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    return (np.where(segment >= 8, 0x7F, value) ^ mask).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    x = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    magnitude = np.where(x >= 0, x, -x - 1)
    exponent = np.where(magnitude >= 256, _segment(magnitude >> 8) + 1, 0)
    exponent = np.minimum(exponent, 7)
    mantissa = np.where(exponent == 0, magnitude >> 4, magnitude >> (exponent + 3)) & 0x0F
    return (((exponent << 4) | mantissa) ^ (sign ^ 0x55)).astype(np.uint8)


_DECODE = {"g711_ulaw": _ulaw_decode_table(), "g711_alaw": _alaw_decode_table()}
_ENCODE = {"g711_ulaw": _ulaw_encode_table(), "g711_alaw": _alaw_encode_table()}


def decode(data: bytes, kind: str) -> bytes:
    """G.711 bytes as pcm16 at 8 kHz."""
    return _DECODE[kind][np.frombuffer(data, dtype=np.uint8)].tobytes()


def encode(pcm: bytes, kind: str) -> bytes:
    """pcm16 (any rate) as G.711 bytes, sample for sample."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.int32) + 32768
    return _ENCODE[kind][samples].tobytes()


class _Resampler:
    """pcm16 mono from one rate to another, chunk by chunk (its state carries across chunks)."""

    def __init__(self, source: int, target: int) -> None:
        self._source = source
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=target)

    def __call__(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self._source
        return b"".join(bytes(out.to_ndarray().tobytes()) for out in self._resampler.resample(frame))


class Decoder:
    """A session's input audio in `kind` as the pcm16 at 24 kHz the session works in."""

    def __init__(self, kind: Format) -> None:
        self.kind = kind
        self._resample = _Resampler(G711_RATE, SAMPLE_RATE) if kind != "pcm16" else None

    def __call__(self, data: bytes) -> bytes:
        if self._resample is None:
            return data
        return self._resample(decode(data, self.kind))


class Encoder:
    """A response's pcm16 at 24 kHz as the session's output format."""

    def __init__(self, kind: Format) -> None:
        self.kind = kind
        self._resample = PcmResampler(SAMPLE_RATE, G711_RATE) if kind != "pcm16" else None

    def __call__(self, pcm: bytes) -> bytes:
        if self._resample is None:
            return pcm
        return encode(self._resample(pcm), self.kind)

    def flush(self) -> bytes:
        """What the resampler still holds, encoded: the end of a response's audio."""
        if self._resample is None:
            return b""
        return encode(self._resample.flush(), self.kind)
