"""OpenAI's Conversations API: /v1/conversations and /v1/conversations/{id}/items."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.conversations import (
    INCLUDABLE,
    Conversation,
    ConversationCreate,
    ConversationDeleted,
    ConversationItem,
    ConversationItemList,
    ConversationUpdate,
    ItemsCreate,
)
from gateway.services.conversations import Conversations

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: a bad item (OpenAI's `param`, e.g. `items[0].content[0].type`), more than "
        "20 items, bad `metadata` (16 string pairs at most), a bad `limit`, `order` or `include`.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such conversation or item for the key's tenant (`code`: not_found).",
        413: "Request body too large.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
        503: "The store cannot be reached.",
    }.items()
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_INCLUDE = _query(
    "include",
    {"type": "array", "items": {"type": "string", "enum": list(INCLUDABLE)}},
    "Accepted as OpenAI's; items are kept whole, so what these add is always shown.",
)
_PAGE = [
    _query("after", {"type": "string"}, "The id of the last item of the previous page."),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Items per page."),
    _query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "By addition."),
    _INCLUDE,
]


def _ok(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


def _body(model: type[Any]) -> dict[str, Any]:
    schema = {"content": {"application/json": {"schema": model.model_json_schema()}}}
    return {"requestBody": {"required": True, **schema}}


def conversations_router(service: Conversations) -> APIRouter:
    router = APIRouter(tags=["conversations"], responses=_ERRORS)
    _conversation_routes(router, service)
    _item_routes(router, service)
    return router


def _conversation_routes(router: APIRouter, service: Conversations) -> None:
    @router.post(
        "/v1/conversations",
        summary="Create a conversation (`metadata`, up to 20 initial `items`)",
        openapi_extra=_body(ConversationCreate),
        response_class=Response,
        responses=_ok(Conversation, "The new conversation."),
    )
    async def create_conversation(request: Request) -> Response:
        return await service.create(request)

    @router.get(
        "/v1/conversations/{conversation_id}",
        summary="Retrieve a conversation",
        response_class=Response,
        responses=_ok(Conversation, "The conversation."),
    )
    async def retrieve_conversation(request: Request, conversation_id: str) -> Response:
        return await service.retrieve(request, conversation_id)

    @router.post(
        "/v1/conversations/{conversation_id}",
        summary="Update a conversation's metadata",
        openapi_extra=_body(ConversationUpdate),
        response_class=Response,
        responses=_ok(Conversation, "The conversation with its new metadata."),
    )
    async def update_conversation(request: Request, conversation_id: str) -> Response:
        return await service.update(request, conversation_id)

    @router.delete(
        "/v1/conversations/{conversation_id}",
        summary="Delete a conversation and its items",
        response_class=Response,
        responses=_ok(ConversationDeleted, "The conversation was deleted."),
    )
    async def delete_conversation(request: Request, conversation_id: str) -> Response:
        return await service.delete(request, conversation_id)


def _item_routes(router: APIRouter, service: Conversations) -> None:
    @router.post(
        "/v1/conversations/{conversation_id}/items",
        summary="Add up to 20 items to a conversation",
        openapi_extra={**_body(ItemsCreate), "parameters": [_INCLUDE]},
        response_class=Response,
        responses=_ok(ConversationItemList, "The items added, as stored."),
    )
    async def add_items(request: Request, conversation_id: str) -> Response:
        return await service.add_items(request, conversation_id)

    @router.get(
        "/v1/conversations/{conversation_id}/items",
        summary="List a conversation's items (`after`, `limit`, `order`: desc by default, `include`)",
        openapi_extra={"parameters": _PAGE},
        response_class=Response,
        responses=_ok(ConversationItemList, "A page of the conversation's items."),
    )
    async def list_items(request: Request, conversation_id: str) -> Response:
        return await service.list_items(request, conversation_id)

    @router.get(
        "/v1/conversations/{conversation_id}/items/{item_id}",
        summary="Retrieve an item of a conversation",
        openapi_extra={"parameters": [_INCLUDE]},
        response_class=Response,
        responses=_ok(ConversationItem, "The item."),
    )
    async def retrieve_item(request: Request, conversation_id: str, item_id: str) -> Response:
        return await service.retrieve_item(request, conversation_id, item_id)

    @router.delete(
        "/v1/conversations/{conversation_id}/items/{item_id}",
        summary="Delete an item of a conversation",
        response_class=Response,
        responses=_ok(Conversation, "The conversation the item was deleted from."),
    )
    async def delete_item(request: Request, conversation_id: str, item_id: str) -> Response:
        return await service.delete_item(request, conversation_id, item_id)
