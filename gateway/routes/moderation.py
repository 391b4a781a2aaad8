"""POST /v1/moderations (OpenAI's), and the admin API of moderation: each tenant's policy, and the
flags moderation raised (for review; the panel reads the same)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.auth import AdminGuard
from gateway.http.client_address import TrustedProxies
from gateway.protocol import ErrorResponse
from gateway.protocol.moderation import ModerationPolicy, ModerationRequest
from gateway.routes.admin import audited_admin_router, require_tenant
from gateway.services.moderation import PATH, ModerationService
from gateway.services.moderation_check import Policies
from gateway.store import Store

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request: no input, a malformed part or image, an image for a text-only model.",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "Not a moderation model, or one the key may not use (`code`: model_not_found).",
        413: "Request body too large.",
        429: "Over a rate limit (`rate_limit_exceeded`, Retry-After) or a budget (`insufficient_quota`).",
        503: "The moderation classifiers did not answer in time (`code`: moderation_unavailable).",
    }.items()
}


def moderation_router(service: ModerationService) -> APIRouter:
    router = APIRouter(tags=["moderations"], responses=_ERRORS)

    @router.post(
        PATH,
        summary="Classify text and images against OpenAI's 13 moderation categories",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ModerationRequest.model_json_schema()}},
            }
        },
    )
    async def create_moderation(request: Request) -> Response:
        return await service.handle(request)

    return router


def moderation_admin_router(
    guard: AdminGuard, policies: Policies, store: Store, proxies: TrustedProxies | None = None
) -> APIRouter:
    """/admin/moderation: a tenant's policy (read, set, remove: audited) and the stored flags."""
    router = audited_admin_router(guard, proxies, "/admin/moderation")

    async def tenant(tenant_id: str) -> None:
        await require_tenant(store, tenant_id)

    @router.get("/policies/{tenant_id}", summary="A tenant's moderation policy (its own, or the default)")
    async def get_policy(tenant_id: str) -> dict[str, Any]:
        await tenant(tenant_id)
        own = await policies.stored(tenant_id)
        policy = own or policies.default
        return {"tenant_id": tenant_id, "source": "tenant" if own else "default", **policy.model_dump()}

    @router.put("/policies/{tenant_id}", summary="Set a tenant's moderation policy (audited)")
    async def set_policy(tenant_id: str, body: ModerationPolicy, request: Request) -> dict[str, Any]:
        await tenant(tenant_id)
        await policies.set(tenant_id, body, request.state.admin_audit)
        return {"tenant_id": tenant_id, "source": "tenant", **body.model_dump()}

    @router.delete("/policies/{tenant_id}", summary="Remove a tenant's policy: the default applies (audited)")
    async def delete_policy(tenant_id: str, request: Request) -> dict[str, Any]:
        await tenant(tenant_id)
        await policies.set(tenant_id, None, request.state.admin_audit)
        return {"tenant_id": tenant_id, "source": "default", **policies.default.model_dump()}

    @router.get("/flags", summary="Moderation flags, newest first")
    async def list_flags(
        tenant_id: str | None = None,
        user: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        flags = await policies.store.flags(tenant_id=tenant_id, end_user=user, limit=limit)
        return {"object": "list", "data": [flag.view() for flag in flags]}

    return router
