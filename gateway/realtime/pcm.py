"""The Realtime API's audio: pcm16, mono, little-endian, at 24 kHz, base64 on the wire (the
speech endpoint's `pcm` output is the same)."""

from __future__ import annotations

import base64
import binascii

from adapters.tts import SAMPLE_RATE
from gateway.realtime.events import EventError

BYTES_PER_S = SAMPLE_RATE * 2
MIN_COMMIT_BYTES = BYTES_PER_S // 10  # OpenAI refuses a commit of less than 100 ms


def decode(data: str, param: str, *, whole_samples: bool = True) -> bytes:
    """Base64 audio (pcm16 unless `whole_samples` is false: G.711 has one byte a sample) as sent by
    the client; `param` names it in the error if it is not."""
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise EventError("The audio is not valid base64.", code="invalid_value", param=param) from None
    if whole_samples and len(decoded) % 2:
        raise EventError("pcm16 audio has an even number of bytes.", code="invalid_value", param=param)
    return decoded


def ms_of(pcm_bytes: int) -> int:
    """Whole milliseconds of `pcm_bytes` of audio."""
    return pcm_bytes * 1000 // BYTES_PER_S


def bytes_of(ms: int) -> int:
    return ms * BYTES_PER_S // 1000
