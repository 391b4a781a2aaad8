"""The memory API in mem0's platform shape (docs/memory.md): the paths mem0's `MemoryClient` calls,
v1 to v3, each to one `MemoryService` method."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.services.memory import MemoryService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: no entity id to add under, an unsupported filter, a bad field.",
        401: "Missing, wrong, revoked or expired API key (`Authorization: Token` or `Bearer`).",
        404: "No such memory for the key's tenant (`code`: not_found), or the embedding or "
        "extraction model is not served to the key (`model_not_found`).",
        429: "Over a rate limit (this request's, or its embedding's or extraction's).",
    }.items()
}


def memory_router(service: MemoryService) -> APIRouter:
    router = APIRouter(tags=["memory"], responses=_ERRORS)

    @router.get("/v1/ping/", summary="Check the key (mem0's client calls it on construction)")
    async def ping(request: Request) -> Response:
        return await service.ping(request)

    for path in ("/v1/memories/", "/v3/memories/add/"):
        router.add_api_route(
            path,
            _bound(service.add, "POST " + path),
            methods=["POST"],
            summary="Add memories from messages (`infer`: extract facts, or store as given)",
            response_class=Response,
        )
    for path in ("/v1/memories/search/", "/v2/memories/search/", "/v3/memories/search/"):
        router.add_api_route(
            path,
            _bound(service.search, "POST " + path),
            methods=["POST"],
            summary="Search a scope's memories by meaning",
            response_class=Response,
        )
    for path, method in (("/v2/memories/", "POST"), ("/v3/memories/", "POST"), ("/v1/memories/", "GET")):
        router.add_api_route(
            path,
            _bound(service.list, f"{method} {path}"),
            methods=[method],
            summary="List a scope's memories, newest first (`page`, `page_size`)",
            response_class=Response,
        )

    @router.delete("/v1/memories/", summary="Delete every memory of a scope", response_class=Response)
    async def delete_all(request: Request) -> Response:
        return await service.delete_all(request)

    @router.get("/v1/memories/{memory_id}/", summary="Retrieve a memory", response_class=Response)
    async def get_memory(request: Request, memory_id: str) -> Response:
        return await service.get(request, memory_id)

    @router.put(
        "/v1/memories/{memory_id}/", summary="Update a memory's text or metadata", response_class=Response
    )
    async def update_memory(request: Request, memory_id: str) -> Response:
        return await service.update(request, memory_id)

    @router.delete("/v1/memories/{memory_id}/", summary="Delete a memory", response_class=Response)
    async def delete_memory(request: Request, memory_id: str) -> Response:
        return await service.delete(request, memory_id)

    @router.get(
        "/v1/memories/{memory_id}/history/",
        summary="A memory's changes, oldest first",
        response_class=Response,
    )
    async def memory_history(request: Request, memory_id: str) -> Response:
        return await service.history(request, memory_id)

    return router


def _bound(method: Any, endpoint: str) -> Any:
    async def endpoint_(request: Request) -> Response:
        response: Response = await method(request, endpoint)
        return response

    return endpoint_
