"""The Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id}, its cancel and its input
items (docs/responses.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.services.responses import ResponsesService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request (`param` names the field; `previous_response_not_found`).",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No response with this id for the key's tenant (`code`: not_found), or no such model.",
        413: "Request body too large.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
        503: "The engine or the store cannot be reached.",
    }.items()
}
# OpenAI's events (`event: response.created` ... `event: response.completed`), each with its
# `sequence_number`; no schema, as each event has its own shape.
_SSE: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {}}
_STREAMABLE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The response object, or its events with `stream`.", "content": _SSE}
}
_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"type": "object", "required": ["model", "input"]}}},
}


def responses_router(service: ResponsesService) -> APIRouter:
    router = APIRouter(tags=["responses"], responses=_ERRORS)

    @router.post(
        "/v1/responses",
        summary="Create a model response (function tools, `previous_response_id`, `background`, `stream`)",
        openapi_extra={"requestBody": _BODY},
        response_class=Response,
        responses=_STREAMABLE,
    )
    async def create_response(request: Request) -> Response:
        return await service.create(request)

    @router.get(
        "/v1/responses/{response_id}",
        summary="Retrieve a response (`stream=true&starting_after=N` replays a background one's events)",
        response_class=Response,
        responses=_STREAMABLE,
    )
    async def retrieve_response(request: Request, response_id: str) -> Response:
        return await service.retrieve(request, response_id)

    @router.post(
        "/v1/responses/{response_id}/cancel",
        summary="Cancel a background response",
        response_class=Response,
        responses={200: {"description": "The response object, `status: cancelled`."}},
    )
    async def cancel_response(request: Request, response_id: str) -> Response:
        return await service.cancel(request, response_id)

    @router.delete(
        "/v1/responses/{response_id}",
        summary="Delete a stored response",
        response_class=Response,
        responses={200: {"description": "`{id, object: response, deleted: true}`."}},
    )
    async def delete_response(request: Request, response_id: str) -> Response:
        return await service.delete(request, response_id)

    @router.get(
        "/v1/responses/{response_id}/input_items",
        summary="List a response's input items (`after`, `limit`, `order`: desc by default)",
        response_class=Response,
        responses={200: {"description": "OpenAI's list of items."}},
    )
    async def list_input_items(request: Request, response_id: str) -> Response:
        return await service.input_items(request, response_id)

    return router
