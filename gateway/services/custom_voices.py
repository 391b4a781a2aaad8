"""Custom voices, as OpenAI's: `POST/GET /v1/audio/voice_consents` (a voice actor's recorded consent,
with its label and language), `GET/POST/DELETE /v1/audio/voice_consents/{id}`, `POST /v1/audio/voices`
(a reference clip made into a voice under one of the tenant's consents: `voice_...`),
`GET/DELETE /v1/audio/voices/{id}` and the tenant's voices listed by `GET /v1/audio/voices?type=audio_sample`
(Tantra's: OpenAI lists them in its dashboard only).

Each endpoint is admitted as the Files API's (authenticated, one request against the key's and
tenant's limits, no tokens, a ledger row). Consents and voices belong to their tenant: another
tenant's id is the 404 of one that does not exist. The recordings go to the blob store as sent
(the consent: the evidence), the clips as the WAV XTTS reads; who uploaded each (key, end user) and
when are kept on its row. Deleting a consent withdraws it: the voices made under it go too. A
reference clip whose speaker does not sound like the consent recording's is refused (the speaker
check, when the diarization extra is installed).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from adapters.stt.audio import decode_audio
from adapters.stt.diarizer import SpeakerCheck
from gateway.admission import Ticket, validate
from gateway.admission.form import read_upload
from gateway.blobs import BlobStore, new_blob_key
from gateway.errors import InvalidRequest, NotFound, PayloadTooLarge
from gateway.media.service import as_api_errors
from gateway.protocol.common import Strict
from gateway.protocol.voices import (
    CustomVoice,
    CustomVoiceDeleted,
    CustomVoiceList,
    VoiceConsent,
    VoiceConsentDeleted,
    VoiceConsentList,
    VoiceConsentUpdate,
)
from gateway.services.stored import StoredObjects, answer, unix
from gateway.services.voice_clips import VOICE_PREFIX, ClipLimits, VoiceCloner, checked_clip
from gateway.store import utcnow
from gateway.store.owned import Owner, PageQuery
from gateway.store.voices import StoredVoice, StoredVoiceConsent, VoiceRow, VoiceStore

CONSENTS = "/v1/audio/voice_consents"
VOICES = "/v1/audio/voices"
CONSENT_PREFIX = "cons_"
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")
_MAX_NAME = 256


class CustomVoices:
    def __init__(
        self,
        objects: StoredObjects,
        store: VoiceStore,
        blobs: BlobStore,
        limits: ClipLimits,
        cloner: VoiceCloner,
        speakers: SpeakerCheck | None = None,
        min_similarity: float = 0.0,
    ) -> None:
        self._objects = objects
        self._store = store
        self._blobs = blobs
        self._limits = limits
        self.cloner = cloner
        self._speakers = speakers if min_similarity > 0 else None
        self._min_similarity = min_similarity

    # Consents ------------------------------------------------------------------------------------

    async def create_consent(self, request: Request) -> Response:
        async with self._objects.enter(request, CONSENTS) as ticket:
            data, fields = await self._upload(ticket, "recording", ("name", "language"))
            language = fields["language"]
            if not _LANGUAGE.match(language) or len(language) > 35:
                raise InvalidRequest(
                    f"Invalid value for 'language': {language!r} (a BCP 47 tag such as en-US).",
                    param="language",
                    code="invalid_value",
                )
            with as_api_errors():
                _, seconds = await asyncio.to_thread(checked_clip, data, "recording", self._limits)
            row = StoredVoiceConsent(name=fields["name"], language=language, seconds=seconds)
            await self._keep(ticket, row, CONSENT_PREFIX, "voice-consent", data)
            return answer(ticket, _consent(row).model_dump())

    async def list_consents(self, request: Request) -> Response:
        async with self._objects.enter(request, CONSENTS) as ticket:
            rows, more = await self._page(ticket, StoredVoiceConsent, request)
            data = [_consent(row) for row in rows]
            listing = VoiceConsentList(data=data, **_ends(data), has_more=more)
            return answer(ticket, listing.model_dump())

    async def retrieve_consent(self, request: Request, consent_id: str) -> Response:
        async with self._objects.enter(request, CONSENTS + "/{consent_id}") as ticket:
            row = await self._store.get(StoredVoiceConsent, _owner(ticket), consent_id)
            if row is None:
                raise _no_consent(consent_id)
            return answer(ticket, _consent(row).model_dump())

    async def update_consent(self, request: Request, consent_id: str) -> Response:
        async with self._objects.enter(request, CONSENTS + "/{consent_id}") as ticket:
            _, _, update = await ticket.read_json(VoiceConsentUpdate)
            row = await self._store.rename(_owner(ticket), consent_id, update.name)
            if row is None:
                raise _no_consent(consent_id)
            return answer(ticket, _consent(row).model_dump())

    async def delete_consent(self, request: Request, consent_id: str) -> Response:
        async with self._objects.enter(request, CONSENTS + "/{consent_id}") as ticket:
            if not await self._remove(ticket, StoredVoiceConsent, consent_id):
                raise _no_consent(consent_id)
            return answer(ticket, VoiceConsentDeleted(id=consent_id).model_dump())

    # Voices --------------------------------------------------------------------------------------

    async def create_voice(self, request: Request) -> Response:
        async with self._objects.enter(request, VOICES) as ticket:
            data, fields = await self._upload(ticket, "audio_sample", ("name", "consent"))
            consent = await self._store.get(StoredVoiceConsent, _owner(ticket), fields["consent"])
            if consent is None:
                raise _no_consent(fields["consent"], param="consent")
            with as_api_errors():
                clip, seconds = await asyncio.to_thread(checked_clip, data, "audio_sample", self._limits)
                await self._same_speaker(consent, clip)
            row = StoredVoice(
                name=fields["name"], consent_id=consent.id, language=consent.language, seconds=seconds
            )
            await self._keep(ticket, row, VOICE_PREFIX, "voice", clip)
            return answer(ticket, _voice(row).model_dump())

    async def list_voices(self, request: Request) -> Response:
        async with self._objects.enter(request, VOICES) as ticket:
            rows, more = await self._page(ticket, StoredVoice, request)
            data = [_voice(row) for row in rows]
            return answer(ticket, CustomVoiceList(data=data, **_ends(data), has_more=more).model_dump())

    async def retrieve_voice(self, request: Request, voice_id: str) -> Response:
        async with self._objects.enter(request, VOICES + "/{voice_id}") as ticket:
            row = await self._store.get(StoredVoice, _owner(ticket), voice_id)
            if row is None:
                raise _no_voice(voice_id)
            return answer(ticket, _voice(row).model_dump())

    async def delete_voice(self, request: Request, voice_id: str) -> Response:
        async with self._objects.enter(request, VOICES + "/{voice_id}") as ticket:
            if not await self._remove(ticket, StoredVoice, voice_id):
                raise _no_voice(voice_id)
            return answer(ticket, CustomVoiceDeleted(id=voice_id).model_dump())

    async def close(self) -> None:
        if self._speakers is not None:
            await self._speakers.close()

    async def _same_speaker(self, consent: StoredVoiceConsent, clip: bytes) -> None:
        """400 `voice_consent_mismatch` when the clip's speaker is not the consent recording's."""
        if self._speakers is None:
            return
        recording = b"".join([chunk async for chunk in self._blobs.get(consent.blob_key)])
        first, second = await asyncio.gather(
            asyncio.to_thread(decode_audio, recording), asyncio.to_thread(decode_audio, clip)
        )
        similarity = await self._speakers.similarity(first.samples, second.samples)
        if similarity < self._min_similarity:
            raise InvalidRequest(
                f"The audio sample's speaker does not sound like the one who recorded consent "
                f"{consent.id} (similarity {similarity:.2f}, below {self._min_similarity:g}); a voice "
                "is made from the consenting speaker's own voice.",
                param="audio_sample",
                code="voice_consent_mismatch",
            )

    # Shared --------------------------------------------------------------------------------------

    async def _upload(
        self, ticket: Ticket, part: str, required: tuple[str, ...]
    ) -> tuple[bytes, dict[str, str]]:
        data, fields = await read_upload(ticket.request, self._limits.max_bytes + 64 * 1024, file_field=part)
        if len(data) > self._limits.max_bytes:
            raise PayloadTooLarge(
                f"The `{part}` file is larger than the limit of {self._limits.max_bytes} bytes.",
                param=part,
                code="file_too_large",
            )
        for name in required:
            value = fields.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
            if len(value) > _MAX_NAME:
                raise InvalidRequest(f"'{name}' is longer than {_MAX_NAME} characters.", param=name)
        return data, {name: fields[name].strip() for name in required}

    async def _keep(self, ticket: Ticket, row: VoiceRow, prefix: str, kind: str, data: bytes) -> None:
        owner = _owner(ticket)
        row.id = prefix + secrets.token_hex(12)
        row.tenant_id = owner.tenant_id
        row.created_by = owner.key_id
        row.end_user = self._objects.owner(ticket).user
        row.created_at = utcnow()
        row.tags = {}
        row.blob_key = new_blob_key(kind, owner.tenant_id or "anonymous", row.id)
        await self._blobs.put(row.blob_key, _once(data), max_bytes=self._limits.max_bytes)
        try:
            await self._store.add(row)
        except BaseException:
            await self._blobs.delete(row.blob_key)
            raise

    async def _page(self, ticket: Ticket, table: Any, request: Request) -> tuple[list[Any], bool]:
        params = validate(_ListParams, dict(request.query_params))
        owner = _owner(ticket)
        if params.after is not None and await self._store.get(table, owner, params.after) is None:
            raise InvalidRequest(f"No such object: {params.after}", param="after")
        rows = await self._store.page(table, owner, PageQuery(params.after, params.limit, params.order))
        return rows[: params.limit], len(rows) > params.limit

    async def _remove(self, ticket: Ticket, table: Any, object_id: str) -> bool:
        gone = await self._store.remove(table, _owner(ticket), object_id)
        for row in gone or []:
            await self._blobs.delete(row.blob_key)
            if isinstance(row, StoredVoice):
                await self.cloner.forget(row.id)
        return gone is not None


class _ListParams(Strict):
    after: str | None = None
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    # GET /v1/audio/voices?type=audio_sample: the tenant's custom voices (routes/voices.py).
    type: Literal["audio_sample"] | None = None


def _owner(ticket: Ticket) -> Owner:
    return Owner(ticket.principal.tenant_id, ticket.principal.key_id)


def _consent(row: StoredVoiceConsent) -> VoiceConsent:
    created = unix(row.created_at) or 0
    return VoiceConsent(id=row.id, name=row.name, language=row.language, created_at=created)


def _voice(row: StoredVoice) -> CustomVoice:
    return CustomVoice(id=row.id, name=row.name, created_at=unix(row.created_at) or 0, consent=row.consent_id)


def _ends(data: list[Any]) -> dict[str, str | None]:
    return {"first_id": data[0].id if data else None, "last_id": data[-1].id if data else None}


def _no_consent(consent_id: str, param: str = "consent_id") -> NotFound:
    return NotFound(f"No such voice consent: {consent_id}", param=param, code="not_found")


def _no_voice(voice_id: str) -> NotFound:
    return NotFound(f"No such voice: {voice_id}", param="voice_id", code="voice_not_found")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


__all__ = ["CustomVoices"]
