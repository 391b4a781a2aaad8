"""Custom voices, as OpenAI's: /v1/audio/voice_consents and /v1/audio/voices
(gateway/services/custom_voices.py). The tenant's voices are listed by
`GET /v1/audio/voices?type=audio_sample` (the speech router's list)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.voices import (
    CustomVoice,
    CustomVoiceDeleted,
    VoiceConsent,
    VoiceConsentDeleted,
    VoiceConsentList,
    VoiceConsentUpdate,
)
from gateway.services.custom_voices import CONSENTS, VOICES, CustomVoices

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A bad field (`param` names it): not audio (`invalid_audio`), too short (`audio_too_short`) "
        "or too long (`audio_too_long`), a missing `name`, `language`, `consent` or file, not multipart.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such consent or voice: an unknown id, or another tenant's.",
        413: "A recording or clip over TANTRA_VOICES_MAX_BYTES (OpenAI's 10 MiB).",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
    }.items()
}


def _multipart(file: str, fields: tuple[str, ...]) -> dict[str, Any]:
    properties: dict[str, Any] = {file: {"type": "string", "format": "binary"}}
    properties |= {name: {"type": "string"} for name in fields}
    schema = {"type": "object", "properties": properties, "required": [file, *fields]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def voices_router(voices: CustomVoices) -> APIRouter:
    router = APIRouter(tags=["audio"], responses=_ERRORS)
    _consent_routes(router, voices)
    _voice_routes(router, voices)
    return router


def _consent_routes(router: APIRouter, voices: CustomVoices) -> None:
    @router.post(
        CONSENTS,
        summary="Upload a voice actor's consent recording",
        response_model=VoiceConsent,
        openapi_extra=_multipart("recording", ("name", "language")),
    )
    async def create_consent(request: Request) -> Response:
        return await voices.create_consent(request)

    @router.get(CONSENTS, summary="List the consent recordings", response_model=VoiceConsentList)
    async def list_consents(request: Request) -> Response:
        return await voices.list_consents(request)

    @router.get(
        CONSENTS + "/{consent_id}", summary="Retrieve a consent recording", response_model=VoiceConsent
    )
    async def retrieve_consent(request: Request, consent_id: str) -> Response:
        return await voices.retrieve_consent(request, consent_id)

    @router.post(
        CONSENTS + "/{consent_id}",
        summary="Rename a consent recording",
        response_model=VoiceConsent,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": VoiceConsentUpdate.model_json_schema()}},
            }
        },
    )
    async def update_consent(request: Request, consent_id: str) -> Response:
        return await voices.update_consent(request, consent_id)

    @router.delete(
        CONSENTS + "/{consent_id}",
        summary="Delete a consent recording (withdrawn: the voices made under it go too)",
        response_model=VoiceConsentDeleted,
    )
    async def delete_consent(request: Request, consent_id: str) -> Response:
        return await voices.delete_consent(request, consent_id)


def _voice_routes(router: APIRouter, voices: CustomVoices) -> None:
    @router.post(
        VOICES,
        summary="Create a custom voice from a reference clip, under a consent recording",
        response_model=CustomVoice,
        openapi_extra=_multipart("audio_sample", ("name", "consent")),
    )
    async def create_voice(request: Request) -> Response:
        return await voices.create_voice(request)

    @router.get(VOICES + "/{voice_id}", summary="Retrieve a custom voice", response_model=CustomVoice)
    async def retrieve_voice(request: Request, voice_id: str) -> Response:
        return await voices.retrieve_voice(request, voice_id)

    @router.delete(VOICES + "/{voice_id}", summary="Delete a custom voice", response_model=CustomVoiceDeleted)
    async def delete_voice(request: Request, voice_id: str) -> Response:
        return await voices.delete_voice(request, voice_id)
