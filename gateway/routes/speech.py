"""POST /v1/audio/speech: text to speech, as OpenAI's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from adapters.tts import CONTENT_TYPES
from gateway.auth import Principal
from gateway.http.client_address import client_address
from gateway.media.service import as_api_errors
from gateway.protocol import ErrorResponse, SpeechRequest
from gateway.services.speech import PATH, SpeechService

Authenticate = Callable[[Mapping[str, str], str | None], Awaitable[Principal]]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: an unknown voice, an empty or too long `input`, a bad `speed` or format.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "Not a speech model, or one the key may not use (`code`: model_not_found).",
        413: "Request body too large.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After) or a budget (`insufficient_quota`).",
        503: "The speech engine cannot run (`code`: speech_unavailable), or the rate limiter is down.",
    }.items()
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_SSE_EXAMPLE = (
    'data: {"type":"speech.audio.delta","audio":"SUQzBAAAAAAA..."}\n\n'
    'data: {"type":"speech.audio.done","usage":{"input_tokens":4,"output_tokens":0,"total_tokens":4}}\n\n'
)


def speech_router(
    service: SpeechService,
    authenticate: Authenticate,
    custom_voices: Callable[[Request], Awaitable[Response]] | None = None,
) -> APIRouter:
    router = APIRouter(tags=["audio"], responses=_ERRORS)

    @router.get(
        "/v1/audio/voices",
        summary="List the voices by language (Tantra's extension; `?language=ja` filters), or with "
        "`?type=audio_sample` the tenant's custom voices (an OpenAI page: `after`, `limit`, `order`)",
    )
    async def list_voices(request: Request, language: str | None = None) -> Any:
        if custom_voices is not None and "type" in request.query_params:
            return await custom_voices(request)
        await authenticate(request.headers, client_address(request))
        with as_api_errors():
            return await service.voices(language)

    @router.post(
        PATH,
        summary="Speak a text (audio streamed as it is made, or SSE with `stream_format: sse`)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}},
            }
        },
        response_class=Response,
        responses={
            200: {
                "description": "The audio in `response_format` (`pcm`: raw 16-bit little-endian mono "
                "at 24 kHz), sent as it is synthesised; with `stream_format: sse`, `speech.audio.delta` "
                "events carrying base64 audio, then `speech.audio.done` with usage.",
                "content": {
                    **{media_type: _BINARY for media_type in CONTENT_TYPES.values()},
                    "text/event-stream": {"schema": {"type": "string"}, "example": _SSE_EXAMPLE},
                },
            }
        },
    )
    async def create_speech(request: Request) -> Response:
        return await service.handle(request)

    return router
