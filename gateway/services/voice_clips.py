"""Custom voices' audio: a consent recording or reference clip checked (decodable audio, within the
length limits), a reference clip kept as the 16 kHz mono WAV that XTTS reads, and the voices spoken:
`VoiceCloner.prepare` finds the caller's voice (404 for another tenant's or an unknown id), fetches
its clip from the blob store to local disk once, and clones it on the Coqui backend's XTTS model,
before any synthesis starts."""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapters.stt import SAMPLE_RATE, decode_audio
from adapters.tts.coqui import CoquiBackend
from adapters.tts.errors import UnknownVoice
from gateway.blobs import BlobStore
from gateway.errors import InvalidRequest, NotFound
from gateway.protocol.voices import VOICE_PREFIX
from gateway.store.voices import VoiceStore

_log = logging.getLogger("tantra.tts")


def is_custom(voice: str) -> bool:
    return voice.startswith(VOICE_PREFIX)


@dataclass(frozen=True)
class ClipLimits:
    min_seconds: float
    max_seconds: float
    max_bytes: int


def checked_clip(data: bytes, param: str, limits: ClipLimits) -> tuple[bytes, float]:
    """The clip as a 16-bit 16 kHz mono WAV and its length; 400 (`invalid_audio`, `audio_too_long`,
    `audio_too_short`) naming `param` for what is not audio or not of a usable length."""
    decoded = decode_audio(data, param=param, max_seconds=limits.max_seconds)
    if decoded.seconds < limits.min_seconds:
        raise InvalidRequest(
            f"The recording is {decoded.seconds:.1f} s long; at least {limits.min_seconds:g} s of speech "
            "is needed.",
            param=param,
            code="audio_too_short",
        )
    pcm = (np.clip(decoded.samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(pcm)
    return out.getvalue(), decoded.seconds


class VoiceCloner:
    """A tenant's custom voices made speakable: each one cloned on the XTTS model once per process."""

    def __init__(
        self, store: VoiceStore, blobs: BlobStore, coqui: CoquiBackend | None, model: str, cache: Path
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._coqui = coqui
        self._model = model
        self._cache = cache
        self._lock = asyncio.Lock()

    async def prepare(self, tenant_id: str | None, voice_id: str, *, param: str) -> None:
        """Ready to speak `voice_id` for this tenant, or OpenAI's error naming `param`."""
        row = await self._store.voice(tenant_id, voice_id)
        if row is None:
            raise NotFound(f"No such voice: {voice_id}", param=param, code="voice_not_found")
        if self._coqui is None or not self._model:
            raise InvalidRequest(
                "Custom voices are not spoken by this gateway: its operator has set no XTTS model "
                "(TANTRA_TTS_COQUI_MODELS and TANTRA_TTS_COQUI_CLONE_MODEL).",
                param=param,
                code="custom_voices_unavailable",
            )
        clip = self._cache / f"{row.id}.wav"
        async with self._lock:  # one fetch per clip, however many requests wait for it
            if not await asyncio.to_thread(clip.exists):
                data = b"".join([chunk async for chunk in self._blobs.get(row.blob_key)])
                await asyncio.to_thread(_write, clip, data)
        try:
            self._coqui.clone(row.id, self._model, clip, row.language)
        except UnknownVoice:
            raise InvalidRequest(
                f"TANTRA_TTS_COQUI_CLONE_MODEL names `{self._model}`, not one of TANTRA_TTS_COQUI_MODELS.",
                param=param,
                code="custom_voices_unavailable",
            ) from None

    async def forget(self, voice_id: str) -> None:
        """A deleted voice: no longer spoken, its local clip removed."""
        if self._coqui is not None:
            self._coqui.forget(voice_id)
        await asyncio.to_thread((self._cache / f"{voice_id}.wav").unlink, missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
