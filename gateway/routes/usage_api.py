"""The tenants' usage and costs API: GET /v1/organization/usage/{kind} and /v1/organization/costs
(OpenAI's shapes; docs/governance.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.services.usage_api import KINDS, UsageAnalytics

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid query: `start_time` missing, a bad `bucket_width`, `group_by`, `limit` or `page`.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After).",
        503: "The store cannot be reached.",
    }.items()
}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


_LIST = {"type": "array", "items": {"type": "string"}}
_PARAMS = [
    _query("start_time", {"type": "integer"}, "Start of the range (inclusive), Unix seconds.", required=True),
    _query("end_time", {"type": "integer"}, "End of the range (exclusive), Unix seconds; default now."),
    _query("bucket_width", {"type": "string", "enum": ["1m", "1h", "1d"], "default": "1d"}, "Bucket width."),
    _query("group_by", _LIST, "Group results by these fields."),
    _query("limit", {"type": "integer", "minimum": 1}, "Buckets per page."),
    _query("page", {"type": "string"}, "The `next_page` of the previous page."),
    _query("project_ids", _LIST, "Only these tenants (the admin key; a tenant key sees its own only)."),
    _query("api_key_ids", _LIST, "Only these keys."),
    _query("models", _LIST, "Only these models."),
]


def usage_router(service: UsageAnalytics) -> APIRouter:
    router = APIRouter(tags=["usage"], responses=_ERRORS)

    for kind in KINDS:
        if kind != "costs":
            _add_usage_route(router, service, kind)

    @router.get(
        "/v1/organization/costs",
        summary="Costs of the calling key's tenant, in daily buckets",
        openapi_extra={"parameters": _PARAMS},
        response_class=Response,
        responses={200: {"description": "A page of daily buckets of `organization.costs.result`."}},
    )
    async def costs(request: Request) -> Response:
        return await service.handle(request, "costs")

    return router


def _add_usage_route(router: APIRouter, service: UsageAnalytics, kind: str) -> None:
    async def usage(request: Request) -> Response:
        return await service.handle(request, kind)

    extra = [_query("batch", {"type": "boolean"}, "Only batch lines (true) or none (false).")]
    router.add_api_route(
        f"/v1/organization/usage/{kind}",
        usage,
        methods=["GET"],
        name=f"usage_{kind}",
        summary=f"Usage ({kind.replace('_', ' ')}) of the calling key's tenant, in time buckets",
        openapi_extra={"parameters": [*_PARAMS, *(extra if kind == "completions" else [])]},
        response_class=Response,
        responses={200: {"description": f"A page of buckets of `{KINDS[kind].result}`."}},
    )
