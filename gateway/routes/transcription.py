"""POST /v1/audio/transcriptions and POST /v1/audio/translations."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.audio import multipart_schema
from gateway.services.transcription import TranscriptionService

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Not multipart, a missing or bad field, or audio that cannot be decoded (`invalid_audio`), "
        "is too long (`audio_too_long`) or names an unknown language; for `diarized_json`, more than 4 "
        "known speakers, names and references that do not pair up, a reference that is not a data URL "
        "of a 2-10 s clip, or diarization not installed (`diarization_unavailable`).",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "Unknown speech model, or one the key may not use (`code`: model_not_found).",
        413: "The upload is over the size limit (`code`: file_too_large).",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After) or a budget (`insufficient_quota`).",
        503: "Every speech worker is busy (`transcription_busy`, Retry-After), or the rate limiter is down.",
    }.items()
}


def _ok(translation: bool) -> dict[int | str, dict[str, object]]:
    # The components are registered by gateway/http/openapi.py.
    schema = {
        "anyOf": [
            {"$ref": "#/components/schemas/Transcription"},
            {"$ref": "#/components/schemas/TranscriptionVerbose"},
            *([] if translation else [{"$ref": "#/components/schemas/TranscriptionDiarized"}]),
        ]
    }
    content: dict[str, object] = {
        "application/json": {"schema": schema},
        "text/plain": {"schema": {"type": "string"}},
        "text/vtt": {"schema": {"type": "string"}},
    }
    if not translation:
        content["text/event-stream"] = {
            "schema": {"type": "string"},
            "example": 'data: {"type":"transcript.text.delta","delta":" Hello"}\n\n'
            'data: {"type":"transcript.text.done","text":"Hello",'
            '"usage":{"type":"duration","seconds":1.2}}\n\n',
        }
    return {200: {"description": "The transcript in the format asked for.", "content": content}}


def transcription_router(service: TranscriptionService) -> APIRouter:
    router = APIRouter(tags=["audio"], responses=_ERRORS)

    @router.post(
        "/v1/audio/transcriptions",
        summary="Transcribe audio (json, text, srt, vtt, verbose_json, diarized_json; SSE with `stream`)",
        openapi_extra=multipart_schema(translation=False),
        response_model=None,
        responses=_ok(False),
    )
    async def transcriptions(request: Request) -> Response:
        return await service.handle(request, translate=False)

    @router.post(
        "/v1/audio/translations",
        summary="Translate audio into English text",
        openapi_extra=multipart_schema(translation=True),
        response_model=None,
        responses=_ok(True),
    )
    async def translations(request: Request) -> Response:
        return await service.handle(request, translate=True)

    return router
