"""The fine-tuning jobs API (/v1/fine_tuning/jobs), as OpenAI's, and DELETE /v1/models/{model} for
a fine-tuned model (docs/fine-tuning.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.protocol.fine_tuning import (
    CreateFineTuningJob,
    FineTuningJob,
    FineTuningJobList,
    JobCheckpointList,
    JobEventList,
)
from gateway.services.fine_tuning import FineTuningService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A bad field (`param` names it): a model that cannot be fine-tuned, a file whose purpose "
        "is not fine-tune, a bad hyperparameter; cancelling a finished job.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such fine-tuning job or model: an unknown id, or another tenant's.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
    }.items()
}
_JOB = "/v1/fine_tuning/jobs/{fine_tuning_job_id}"


def _ok(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


# Long: one router declaring the seven endpoints of the API, each with its OpenAPI description.
def fine_tuning_router(service: FineTuningService) -> APIRouter:
    router = APIRouter(tags=["fine-tuning"], responses=_ERRORS)

    @router.post(
        "/v1/fine_tuning/jobs",
        summary="Create a fine-tuning job from an uploaded file (purpose fine-tune)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CreateFineTuningJob.model_json_schema()}},
            }
        },
        response_class=Response,
        responses=_ok(FineTuningJob, "The job, validating_files."),
    )
    async def create_job(request: Request) -> Response:
        return await service.create(request)

    @router.get(
        "/v1/fine_tuning/jobs",
        summary="List the tenant's fine-tuning jobs, newest first (`after`, `limit`)",
        response_class=Response,
        responses=_ok(FineTuningJobList, "A page of jobs."),
    )
    async def list_jobs(request: Request) -> Response:
        return await service.list(request)

    @router.get(
        _JOB,
        summary="Retrieve a fine-tuning job",
        response_class=Response,
        responses=_ok(FineTuningJob, "The job."),
    )
    async def retrieve_job(request: Request, fine_tuning_job_id: str) -> Response:
        return await service.retrieve(request, fine_tuning_job_id)

    @router.post(
        _JOB + "/cancel",
        summary="Cancel a fine-tuning job (its trainer is stopped)",
        response_class=Response,
        responses=_ok(FineTuningJob, "The job, cancelled."),
    )
    async def cancel_job(request: Request, fine_tuning_job_id: str) -> Response:
        return await service.cancel(request, fine_tuning_job_id)

    @router.get(
        _JOB + "/events",
        summary="A job's events, newest first: status changes and the training loss per step",
        response_class=Response,
        responses=_ok(JobEventList, "A page of events."),
    )
    async def list_events(request: Request, fine_tuning_job_id: str) -> Response:
        return await service.events(request, fine_tuning_job_id)

    @router.get(
        _JOB + "/checkpoints",
        summary="A succeeded job's checkpoint (its adapter) with its metrics",
        response_class=Response,
        responses=_ok(JobCheckpointList, "The job's checkpoints."),
    )
    async def list_checkpoints(request: Request, fine_tuning_job_id: str) -> Response:
        return await service.checkpoints(request, fine_tuning_job_id)

    @router.delete(
        "/v1/models/{model:path}",
        summary="Delete a fine-tuned model of the caller's tenant",
        response_class=Response,
    )
    async def delete_model(request: Request, model: str) -> Response:
        return await service.delete_model(request, model)

    return router
