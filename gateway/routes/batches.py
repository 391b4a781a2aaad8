"""The Batch API (/v1/batches), as OpenAI's (docs/batches.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.batches import BatchList, BatchObject, CreateBatchRequest
from gateway.services.batches import BatchesService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A bad field (`param` names it): an endpoint or completion_window OpenAI does not take, an "
        "input file whose purpose is not batch, bad metadata, a bad `limit`.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such Batch (or input File) object: an unknown id, or another tenant's.",
        409: "Cancelling a batch that has already ended (`batch_not_cancellable`).",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
    }.items()
}


def _ok(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


def batches_router(service: BatchesService) -> APIRouter:
    router = APIRouter(tags=["batches"], responses=_ERRORS)

    @router.post(
        "/v1/batches",
        summary="Create a batch from an uploaded file of requests (purpose batch)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CreateBatchRequest.model_json_schema()}},
            }
        },
        response_class=Response,
        responses=_ok(BatchObject, "The batch, validating."),
    )
    async def create_batch(request: Request) -> Response:
        return await service.create(request)

    @router.get(
        "/v1/batches",
        summary="List the tenant's batches, newest first (`after`, `limit`)",
        response_class=Response,
        responses=_ok(BatchList, "A page of batches."),
    )
    async def list_batches(request: Request) -> Response:
        return await service.list(request)

    @router.get(
        "/v1/batches/{batch_id}",
        summary="Retrieve a batch",
        response_class=Response,
        responses=_ok(BatchObject, "The batch."),
    )
    async def retrieve_batch(request: Request, batch_id: str) -> Response:
        return await service.retrieve(request, batch_id)

    @router.post(
        "/v1/batches/{batch_id}/cancel",
        summary="Cancel a batch: cancelling, then cancelled with the lines answered so far",
        response_class=Response,
        responses=_ok(BatchObject, "The batch, cancelling (or cancelled when it had not started)."),
    )
    async def cancel_batch(request: Request, batch_id: str) -> Response:
        return await service.cancel(request, batch_id)

    return router
