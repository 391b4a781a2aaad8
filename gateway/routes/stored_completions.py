"""Stored chat completions: GET /v1/chat/completions (the list) and /v1/chat/completions/{id}.
The create route, POST /v1/chat/completions, is the inference router's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.stored import (
    ChatCompletionDeleted,
    MetadataUpdate,
    StoredChatCompletion,
    StoredChatCompletionList,
    StoredMessageList,
)
from gateway.services.stored_completions import StoredCompletions

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: a bad `limit` or `order`, or bad `metadata` (16 string pairs at most).",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No stored completion with this id for the key's tenant (`code`: not_found).",
        413: "Request body too large.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
        503: "The store cannot be reached.",
    }.items()
}


def _query(name: str, schema: dict[str, Any], description: str, style: str | None = None) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if style is not None:
        parameter.update(style=style, explode=True)
    return parameter


_PAGE = [
    _query("after", {"type": "string"}, "The id of the last object of the previous page."),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Objects per page."),
    _query("order", {"type": "string", "enum": ["asc", "desc"], "default": "asc"}, "By creation time."),
]
_LIST = [
    *_PAGE,
    _query("model", {"type": "string"}, "Only the completions this model answered."),
    _query(
        "metadata",
        {"type": "object", "additionalProperties": {"type": "string"}},
        "Only the completions whose metadata has every pair: `metadata[key]=value`.",
        style="deepObject",
    ),
]


def _ok(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


def stored_completions_router(service: StoredCompletions) -> APIRouter:
    router = APIRouter(tags=["stored completions"], responses=_ERRORS)

    @router.get(
        "/v1/chat/completions",
        summary="List stored chat completions (`model`, `metadata[key]=value`, `after`, `limit`, `order`)",
        openapi_extra={"parameters": _LIST},
        response_class=Response,
        responses=_ok(StoredChatCompletionList, "The tenant's completions created with `store: true`."),
    )
    async def list_completions(request: Request) -> Response:
        return await service.list(request)

    @router.get(
        "/v1/chat/completions/{completion_id}",
        summary="Retrieve a stored chat completion",
        response_class=Response,
        responses=_ok(StoredChatCompletion, "The stored completion."),
    )
    async def retrieve_completion(request: Request, completion_id: str) -> Response:
        return await service.retrieve(request, completion_id)

    @router.post(
        "/v1/chat/completions/{completion_id}",
        summary="Update a stored chat completion's metadata",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": MetadataUpdate.model_json_schema()}},
            }
        },
        response_class=Response,
        responses=_ok(StoredChatCompletion, "The stored completion with its new metadata."),
    )
    async def update_completion(request: Request, completion_id: str) -> Response:
        return await service.update(request, completion_id)

    @router.delete(
        "/v1/chat/completions/{completion_id}",
        summary="Delete a stored chat completion",
        response_class=Response,
        responses=_ok(ChatCompletionDeleted, "The completion was deleted."),
    )
    async def delete_completion(request: Request, completion_id: str) -> Response:
        return await service.delete(request, completion_id)

    @router.get(
        "/v1/chat/completions/{completion_id}/messages",
        summary="List the request messages of a stored chat completion (`after`, `limit`, `order`)",
        openapi_extra={"parameters": _PAGE},
        response_class=Response,
        responses=_ok(StoredMessageList, "The request's messages, each with an id."),
    )
    async def list_messages(request: Request, completion_id: str) -> Response:
        return await service.messages(request, completion_id)

    return router
