"""OpenAI's vector stores API (/v1/vector_stores, their files, file batches and search), each path to
one `VectorStoresService` method (docs/memory.md, "Vector stores and file search")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.services.vector_stores import VectorStoresService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A bad field (`param` names it): a chunking strategy out of OpenAI's bounds, a malformed "
        "filter, an expired store.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such vector store, store file, file batch or file: an unknown id, or another tenant's.",
        429: "Over a rate limit (this request's, or its embedding's).",
    }.items()
}

_STORE = "/v1/vector_stores/{store_id}"
_FILE = _STORE + "/files/{file_id}"
_BATCH = _STORE + "/file_batches/{batch_id}"


def vector_stores_router(service: VectorStoresService) -> APIRouter:
    router = APIRouter(tags=["vector stores"], responses=_ERRORS)
    routes: list[tuple[str, str, Any, str]] = [
        ("POST", "/v1/vector_stores", service.create, "Create a vector store (optionally from file_ids)"),
        ("GET", "/v1/vector_stores", service.list_stores, "List the tenant's vector stores"),
        ("GET", _STORE, service.retrieve, "Retrieve a vector store"),
        ("POST", _STORE, service.modify, "Modify a vector store's name, expiry or metadata"),
        ("DELETE", _STORE, service.delete, "Delete a vector store (its files stay in the Files API)"),
        ("POST", _STORE + "/search", service.search, "Search a vector store's chunks by meaning"),
        (
            "POST",
            _STORE + "/files",
            service.add_file,
            "Attach a file: chunked, embedded and indexed as a job",
        ),
        ("GET", _STORE + "/files", service.list_files, "List a vector store's files (`filter` by status)"),
        ("GET", _FILE, service.get_file, "Retrieve a vector store file (its ingestion status)"),
        ("POST", _FILE, service.update_file, "Replace a vector store file's attributes"),
        ("DELETE", _FILE, service.delete_file, "Detach a file from the vector store"),
        ("GET", _FILE + "/content", service.file_content, "A vector store file's parsed text, by chunk"),
        ("POST", _STORE + "/file_batches", service.create_batch, "Attach several files at once"),
        ("GET", _BATCH, service.get_batch, "Retrieve a file batch"),
        ("POST", _BATCH + "/cancel", service.cancel_batch, "Cancel a file batch's files still in progress"),
        ("GET", _BATCH + "/files", service.list_files, "List a file batch's files"),
    ]
    for method, path, handler, summary in routes:
        router.add_api_route(
            path,
            _forward(handler),
            methods=[method],
            summary=summary,
            response_class=Response,
            openapi_extra={"parameters": _path_parameters(path)},
        )
    return router


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """The path's ids, declared (the endpoints read them from `request.path_params`)."""
    names = [name for name in ("store_id", "file_id", "batch_id") if "{" + name + "}" in path]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _forward(handler: Any) -> Any:
    """An endpoint passing the request and the path's ids (store, file, batch) to `handler`."""

    async def endpoint(request: Request) -> Response:
        ids = request.path_params
        args = [ids[name] for name in ("store_id", "file_id") if name in ids]
        if "batch_id" in ids:
            response: Response = await handler(request, *args, batch_id=ids["batch_id"])
        else:
            response = await handler(request, *args)
        return response

    return endpoint
