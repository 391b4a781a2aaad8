"""POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol.anthropic import AnthropicCountTokensRequest, AnthropicMessagesRequest, error_type
from gateway.services.messages import COUNT_TOKENS, MESSAGES, MessagesService

# Anthropic's envelope, inline (a response schema's own definitions would not be hoisted).
_ENVELOPE = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"type": "string", "enum": ["error"]},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
# Every error of these routes is in Anthropic's envelope, typed as Anthropic types its statuses.
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": f"`{error_type(status)}`: {description}",
        "content": {"application/json": {"schema": _ENVELOPE}},
    }
    for status, description in {
        400: "Invalid request: the message names the field to change.",
        401: "Missing, wrong, revoked or expired API key (`x-api-key` or `Authorization: Bearer`).",
        403: "The key may not do this.",
        404: "Unknown model, or one the key may not use.",
        413: "Request body too large.",
        429: "Over a rate limit (Retry-After) or a budget.",
        500: "An unexpected failure.",
        502: "An upstream failed.",
        503: "No engine can take the request now (Anthropic's `overloaded_error`).",
        504: "The engine did not answer in time.",
    }.items()
}
_SSE_EXAMPLE = (
    'event: message_start\ndata: {"type":"message_start","message":{"id":"chatcmpl-1","type":"message",'
    '"role":"assistant","content":[],"model":"tantra-tiny","stop_reason":null,"stop_sequence":null,'
    '"usage":{"input_tokens":9,"output_tokens":0}}}\n\n'
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    '"content_block":{"type":"text","text":""}}\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens",'
    '"stop_sequence":null},"usage":{"input_tokens":9,"output_tokens":1}}\n\n'
    'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
_HEADERS = [
    {
        "name": "anthropic-version",
        "in": "header",
        "required": False,
        "description": "Anthropic's API version (`2023-06-01`); accepted when missing, as vLLM does.",
        "schema": {"type": "string"},
    },
    {
        "name": "anthropic-beta",
        "in": "header",
        "required": False,
        "description": "Passed on to the engine as sent.",
        "schema": {"type": "string"},
    },
]


def anthropic_router(service: MessagesService) -> APIRouter:
    router = APIRouter(tags=["anthropic"], responses=_ERRORS)

    @router.post(
        MESSAGES,
        summary="Create a message: Anthropic's Messages API (JSON, or its SSE events with `stream: true`)",
        openapi_extra=_body(AnthropicMessagesRequest),
        response_model=None,
        responses={
            200: {
                "description": "Anthropic's message, or its stream of events.",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    # No schema: before OpenAPI 3.2 one would describe each event, and each of
                    # Anthropic's events has its own shape.
                    "text/event-stream": {"example": _SSE_EXAMPLE},
                },
            }
        },
    )
    async def create_message(request: Request) -> Response:
        return await service.create(request)

    @router.post(
        COUNT_TOKENS,
        summary="Count a Messages request's input tokens (the engine's tokenizer and chat template)",
        openapi_extra=_body(AnthropicCountTokensRequest),
        response_model=None,
        responses={
            200: {
                "description": '`{"input_tokens": N}`',
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def count_tokens(request: Request) -> Response:
        return await service.count_tokens(request)

    return router


_HELLO = [{"role": "user", "content": "Hello!"}]
_EXAMPLES: dict[str, dict[str, Any]] = {
    "simple": {
        "summary": "One question",
        "value": {"model": "tantra-tiny", "max_tokens": 20, "messages": _HELLO},
    },
    "stream": {
        "summary": "Streamed, with a system prompt",
        "value": {
            "model": "tantra-tiny",
            "max_tokens": 20,
            "system": "Be brief.",
            "messages": _HELLO,
            "stream": True,
        },
    },
}


def _body(schema: type[AnthropicMessagesRequest] | type[AnthropicCountTokensRequest]) -> dict[str, object]:
    """Document the body the route validates by hand (it reads raw bytes to forward them unchanged)."""
    examples = (
        _EXAMPLES
        if schema is AnthropicMessagesRequest
        else {"simple": {"value": {"model": "tantra-tiny", "messages": _HELLO}}}
    )
    return {
        "parameters": _HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema.model_json_schema(by_alias=True), "examples": examples}
            },
        },
    }
