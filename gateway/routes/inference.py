"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.http.openapi import inference_responses
from gateway.protocol import ChatCompletionRequest, CompletionRequest, ErrorResponse
from gateway.services.inference import InferenceService
from gateway.services.relay import SSERelay

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: the message and `param` say what to change.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "Unknown model, or one the key may not use (`code`: model_not_found).",
        413: "Request body too large.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After) or a budget (`insufficient_quota`).",
        503: "The engine, or the rate limiter under the closed policy, is unavailable.",
        504: "The engine did not answer in time.",
    }.items()
}


def inference_endpoints(service: InferenceService) -> dict[str, Callable[[Request], Awaitable[Response]]]:
    """The two endpoints by path: the router's, and `http.exact_routes`' (which answers them first)."""

    async def chat_completions(request: Request) -> Response:
        return await service.handle(request, ChatCompletionRequest, "/v1/chat/completions")

    async def completions(request: Request) -> Response:
        return await service.handle(request, CompletionRequest, "/v1/completions")

    return {"/v1/chat/completions": chat_completions, "/v1/completions": completions}


def inference_router(service: InferenceService) -> APIRouter:
    router = APIRouter(tags=["inference"], responses=_ERRORS)
    endpoints = inference_endpoints(service)

    @router.post(
        "/v1/chat/completions",
        summary="Create a chat completion (JSON, or SSE with `stream: true`)",
        openapi_extra=_body(ChatCompletionRequest),
        response_model=None,
        responses=inference_responses("/v1/chat/completions"),
    )
    async def chat_completions(request: Request) -> Response | SSERelay:
        return await endpoints["/v1/chat/completions"](request)

    @router.post(
        "/v1/completions",
        summary="Create a text completion (JSON, or SSE with `stream: true`)",
        openapi_extra=_body(CompletionRequest),
        response_model=None,
        responses=inference_responses("/v1/completions"),
    )
    async def completions(request: Request) -> Response | SSERelay:
        return await endpoints["/v1/completions"](request)

    return router


def _body(schema: type[ChatCompletionRequest] | type[CompletionRequest]) -> dict[str, object]:
    """Document the body the route validates by hand (it reads raw bytes to forward them unchanged)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema.model_json_schema(by_alias=True)}},
        }
    }
