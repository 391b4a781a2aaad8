"""The Files API (/v1/files) and the Uploads API (/v1/uploads), as OpenAI's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.files import (
    CompleteUploadRequest,
    CreateUploadRequest,
    FileDeleted,
    FileList,
    FileObject,
    UploadObject,
    UploadPartObject,
)
from gateway.services.files import FilesService
from gateway.services.uploads import UploadsService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A bad field (`param` names it): a purpose OpenAI does not define, `expires_after` out of "
        "range, not multipart, parts that do not add up to the upload's bytes.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such File (or Upload) object: an unknown id, or another tenant's.",
        413: "Over the file or part size limit (`file_too_large`, refused before the body is read when "
        "Content-Length says so), or over the tenant's storage quota (`storage_quota_exceeded`).",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
    }.items()
}


def _multipart(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _json(model: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


_FILE_FORM = _multipart(
    {
        "file": {"type": "string", "format": "binary"},
        "purpose": {
            "type": "string",
            "enum": ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"],
        },
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
    },
    ["file", "purpose"],
)


def files_router(files: FilesService, uploads: UploadsService) -> APIRouter:
    router = APIRouter(tags=["files"], responses=_ERRORS)
    _file_routes(router, files)
    _upload_routes(router, uploads)
    return router


def _file_routes(router: APIRouter, files: FilesService) -> None:

    @router.post("/v1/files", summary="Upload a file", openapi_extra=_FILE_FORM, response_model=FileObject)
    async def create_file(request: Request) -> Response:
        return await files.create(request)

    @router.get("/v1/files", summary="List the tenant's files", response_model=FileList)
    async def list_files(request: Request) -> Response:
        return await files.list(request)

    @router.get("/v1/files/{file_id}", summary="Retrieve a file's object", response_model=FileObject)
    async def retrieve_file(request: Request, file_id: str) -> Response:
        return await files.retrieve(request, file_id)

    @router.delete("/v1/files/{file_id}", summary="Delete a file", response_model=FileDeleted)
    async def delete_file(request: Request, file_id: str) -> Response:
        return await files.delete(request, file_id)

    @router.get(
        "/v1/files/{file_id}/content",
        summary="A file's bytes, streamed",
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def file_content(request: Request, file_id: str) -> Response:
        return await files.content(request, file_id)


def _upload_routes(router: APIRouter, uploads: UploadsService) -> None:
    @router.post(
        "/v1/uploads",
        summary="Start an upload",
        openapi_extra=_json(CreateUploadRequest),
        response_model=UploadObject,
    )
    async def create_upload(request: Request) -> Response:
        return await uploads.create(request)

    @router.post(
        "/v1/uploads/{upload_id}/parts",
        summary="Add a part to an upload",
        openapi_extra=_multipart({"data": {"type": "string", "format": "binary"}}, ["data"]),
        response_model=UploadPartObject,
    )
    async def add_part(request: Request, upload_id: str) -> Response:
        return await uploads.add_part(request, upload_id)

    @router.post(
        "/v1/uploads/{upload_id}/complete",
        summary="Join the parts into a file",
        openapi_extra=_json(CompleteUploadRequest),
        response_model=UploadObject,
    )
    async def complete_upload(request: Request, upload_id: str) -> Response:
        return await uploads.complete(request, upload_id)

    @router.post("/v1/uploads/{upload_id}/cancel", summary="Cancel an upload", response_model=UploadObject)
    async def cancel_upload(request: Request, upload_id: str) -> Response:
        return await uploads.cancel(request, upload_id)
