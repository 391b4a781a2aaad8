"""Feedback (Tantra's extension, docs/fine-tuning.md "Feedback"): /v1/feedback, its export to a
fine-tuning file, and /admin/feedback across tenants."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.admission import validate
from gateway.auth import AdminGuard
from gateway.protocol import ErrorResponse
from gateway.protocol.feedback import (
    Feedback,
    FeedbackCreate,
    FeedbackDeleted,
    FeedbackExport,
    FeedbackExported,
    FeedbackList,
    FeedbackListParams,
)
from gateway.routes.admin import ADMIN_ERRORS
from gateway.services.feedback import FeedbackService

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "A bad field (`param` names it): no target or more than one, nothing given (no rating, "
        "label, comment or correction), a rating other than up, down or 1 to 5, bad `metadata`, a "
        "choice the completion has not; an export with fewer than 10 examples (`not_enough_examples`).",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "No such feedback, or no such completion, response, conversation or item for the key's "
        "tenant (another tenant's is not found either; `code`: not_found).",
        413: "Request body too large; an export past the tenant's storage quota.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
    }.items()
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_TARGETS = ["chat.completion", "response", "conversation.item"]
_FILTERS = [
    _query("after", {"type": "string"}, "The id of the last feedback of the previous page."),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Per page."),
    _query("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}, "By creation."),
    _query("target_id", {"type": "string"}, "Feedback on this completion, response or item."),
    _query("target_type", {"type": "string", "enum": _TARGETS}, "Feedback on this kind of object."),
    _query("conversation_id", {"type": "string"}, "Feedback on this conversation's items."),
    _query("rating", {"type": "string", "enum": ["up", "down", "1", "2", "3", "4", "5"]}, "This rating."),
    _query("label", {"type": "string"}, "This label."),
    _query("user", {"type": "string"}, "Given by this end user."),
]


def _ok(model: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}


def _body(model: type[Any]) -> dict[str, Any]:
    schema = {"content": {"application/json": {"schema": model.model_json_schema()}}}
    return {"requestBody": {"required": True, **schema}}


def feedback_router(service: FeedbackService) -> APIRouter:
    router = APIRouter(tags=["feedback"], responses=_ERRORS)

    @router.post(
        "/v1/feedback",
        summary="Rate, label, comment on or correct a stored completion, response or conversation item "
        "(Tantra's extension)",
        openapi_extra=_body(FeedbackCreate),
        response_class=Response,
        responses=_ok(Feedback, "The feedback, stored."),
    )
    async def create_feedback(request: Request) -> Response:
        return await service.create(request)

    @router.get(
        "/v1/feedback",
        summary="List the tenant's feedback, newest first by default (filters, `after`, `limit`)",
        openapi_extra={"parameters": _FILTERS},
        response_class=Response,
        responses=_ok(FeedbackList, "A page of feedback."),
    )
    async def list_feedback(request: Request) -> Response:
        return await service.list(request)

    @router.post(
        "/v1/feedback/export",
        summary="Turn the tenant's feedback into a fine-tuning file (purpose fine-tune): corrections "
        "as supervised examples, better-versus-worse answers as dpo pairs",
        openapi_extra=_body(FeedbackExport),
        response_class=Response,
        responses=_ok(FeedbackExported, "The file made, and how many examples it holds."),
    )
    async def export_feedback(request: Request) -> Response:
        return await service.export(request)

    @router.get(
        "/v1/feedback/{feedback_id}",
        summary="Retrieve a piece of feedback",
        response_class=Response,
        responses=_ok(Feedback, "The feedback."),
    )
    async def retrieve_feedback(request: Request, feedback_id: str) -> Response:
        return await service.retrieve(request, feedback_id)

    @router.delete(
        "/v1/feedback/{feedback_id}",
        summary="Delete a piece of feedback",
        response_class=Response,
        responses=_ok(FeedbackDeleted, "The feedback was deleted."),
    )
    async def delete_feedback(request: Request, feedback_id: str) -> Response:
        return await service.delete(request, feedback_id)

    return router


def feedback_admin_router(guard: AdminGuard, service: FeedbackService) -> APIRouter:
    """/admin/feedback: every tenant's feedback, or one tenant's (`tenant_id`)."""

    async def require_admin(request: Request) -> None:
        guard.check(request.headers)

    router = APIRouter(
        prefix="/admin", tags=["admin"], responses=ADMIN_ERRORS, dependencies=[Depends(require_admin)]
    )

    @router.get(
        "/feedback",
        summary="Feedback across tenants, newest first by default (the same filters, and `tenant_id`)",
        openapi_extra={"parameters": [_query("tenant_id", {"type": "string"}, "One tenant's."), *_FILTERS]},
    )
    async def admin_list_feedback(request: Request) -> dict[str, Any]:
        query = {k: v for k, v in request.query_params.items() if k != "tenant_id"}
        params = validate(FeedbackListParams, query)
        return await service.admin_list(params, request.query_params.get("tenant_id"))

    return router
