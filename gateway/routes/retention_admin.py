"""/admin/retention: the operator's retention defaults, a tenant's own policy (read, set: audited),
what will expire, and a run of the retention job now (docs/governance.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.auth import AdminGuard
from gateway.http.client_address import TrustedProxies
from gateway.routes.admin import audited_admin_router, require_tenant
from gateway.services.retention import LEDGER_MIN_DAYS, Retention
from gateway.store import Store, utcnow

_Days = Annotated[int | None, Field(ge=0, le=36_500)]


class RetentionUpdate(BaseModel):
    """Days each kind is kept for the tenant (0: forever); null removes the tenant's own value (the
    operator's default applies again); a kind left out is not changed."""

    model_config = ConfigDict(extra="forbid")

    ledger: _Days = None
    responses: _Days = None
    chat_completions: _Days = None
    conversations: _Days = None
    files: _Days = None
    batches: _Days = None
    memories: _Days = None
    moderation_flags: _Days = None
    fine_tuning_jobs: _Days = None
    eval_runs: _Days = None

    @field_validator("ledger")
    @classmethod
    def _a_whole_budget_period(cls, days: int | None) -> int | None:
        # Monthly budgets are counted from the ledger's rows of the month.
        if days is not None and 0 < days < LEDGER_MIN_DAYS:
            raise ValueError(f"0 (forever) or at least {LEDGER_MIN_DAYS} days")
        return days


def retention_admin_router(
    guard: AdminGuard, retention: Retention, store: Store, proxies: TrustedProxies | None = None
) -> APIRouter:
    router = audited_admin_router(guard, proxies, "/admin")

    async def tenant(tenant_id: str) -> None:
        await require_tenant(store, tenant_id)

    @router.get(
        "/retention", summary="The operator's retention defaults, every tenant's own, and what is due"
    )
    async def overview(within_days: Annotated[int, Query(ge=0, le=3650)] = 0) -> dict[str, Any]:
        return {
            "defaults": retention.defaults(),
            "tenants": await retention.store.policies(),
            "due": await retention.due(None, within_days=within_days),
        }

    @router.get("/tenants/{tenant_id}/retention", summary="A tenant's retention and what of it will expire")
    async def get_policy(
        tenant_id: str, within_days: Annotated[int, Query(ge=0, le=3650)] = 0
    ) -> dict[str, Any]:
        await tenant(tenant_id)
        return await _view(retention, tenant_id, within_days)

    @router.put("/tenants/{tenant_id}/retention", summary="Set a tenant's retention per kind (audited)")
    async def set_policy(tenant_id: str, body: RetentionUpdate, request: Request) -> dict[str, Any]:
        await tenant(tenant_id)
        changes = {kind: getattr(body, kind) for kind in body.model_fields_set}
        await retention.store.set_policies(tenant_id, changes, utcnow(), request.state.admin_audit)
        return await _view(retention, tenant_id, 0)

    @router.post("/retention/run", summary="Run the retention sweep now on this replica")
    async def run() -> dict[str, Any]:
        return {"deleted": await retention.sweep()}

    return router


async def _view(retention: Retention, tenant_id: str, within_days: int) -> dict[str, Any]:
    own = {kind: days[tenant_id] for kind, days in (await retention.store.policies(tenant_id)).items()}
    defaults = retention.defaults()
    return {
        "tenant_id": tenant_id,
        "defaults": defaults,
        "tenant": own,
        "effective": {kind: own.get(kind, days) for kind, days in defaults.items()},
        "due": await retention.due(tenant_id, within_days=within_days),
    }
