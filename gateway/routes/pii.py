"""The admin API of PII redaction: each tenant's policy (read, set, remove: audited), as the
moderation policies' (docs/governance.md "PII redaction")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import AdminGuard
from gateway.http.client_address import TrustedProxies
from gateway.protocol.pii import PiiPolicy
from gateway.routes.admin import audited_admin_router, require_tenant
from gateway.services.pii import PiiPolicies
from gateway.store import Store


def pii_admin_router(
    guard: AdminGuard, policies: PiiPolicies, store: Store, proxies: TrustedProxies | None = None
) -> APIRouter:
    """/admin/pii/policies/{tenant_id}: GET (the tenant's own, or the default), PUT, DELETE."""
    router = audited_admin_router(guard, proxies, "/admin/pii")

    @router.get("/policies/{tenant_id}", summary="A tenant's PII policy (its own, or the default)")
    async def get_policy(tenant_id: str) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        own = await policies.stored(tenant_id)
        policy = own or policies.default
        return {"tenant_id": tenant_id, "source": "tenant" if own else "default", **policy.model_dump()}

    @router.put("/policies/{tenant_id}", summary="Set a tenant's PII policy (audited)")
    async def set_policy(tenant_id: str, body: PiiPolicy, request: Request) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        await policies.set(tenant_id, body, request.state.admin_audit)
        return {"tenant_id": tenant_id, "source": "tenant", **body.model_dump()}

    @router.delete("/policies/{tenant_id}", summary="Remove a tenant's PII policy: the default applies")
    async def delete_policy(tenant_id: str, request: Request) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        await policies.set(tenant_id, None, request.state.admin_audit)
        return {"tenant_id": tenant_id, "source": "default", **policies.default.model_dump()}

    return router
