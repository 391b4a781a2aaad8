"""/admin/evals: eval sets (a tenant's, or the operator's) uploaded as JSONL, runs on request, and
their scores per model version (docs/orchestration.md "Self-monitoring")."""

from __future__ import annotations

import secrets
from datetime import UTC
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import AdminGuard
from gateway.errors import InvalidRequest
from gateway.http.client_address import TrustedProxies
from gateway.routes.admin import audited_admin_router, require_tenant
from gateway.services.eval_runs import EvalRuns
from gateway.services.evals import parse_jsonl
from gateway.store import Store, utcnow
from gateway.store.evals import EvalRunRow, EvalSetRow


class EvalSetCreate(BaseModel):
    """An eval set: its items as JSONL (one item a line, docs/orchestration.md), the model it runs
    against, and for a tenant's set the key its runs act as (limits and ledger are that key's)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=256)
    jsonl: str = Field(min_length=1)
    tenant_id: str | None = None
    key_id: str | None = None
    # Seconds between scheduled runs; unset: runs on request only.
    interval_s: float | None = Field(None, ge=60)
    margin: float | None = Field(None, ge=0, le=1)


def evals_admin_router(
    guard: AdminGuard, evals: EvalRuns, store: Store, proxies: TrustedProxies | None = None
) -> APIRouter:
    router = audited_admin_router(guard, proxies, "/admin/evals")

    @router.post("/sets", summary="Create an eval set from JSONL")
    async def create_set(body: EvalSetCreate) -> dict[str, Any]:
        await _check_owner(store, body.tenant_id, body.key_id)
        items = parse_jsonl(body.jsonl, evals.options.max_items)
        row = EvalSetRow(
            id=f"evalset_{secrets.token_hex(12)}",
            tenant_id=body.tenant_id,
            created_by=body.key_id,
            name=body.name,
            model=body.model,
            items=[item.as_json() for item in items],
            interval_s=body.interval_s,
            margin=body.margin,
            created_at=utcnow(),
        )
        return set_view(await evals.store.add_set(row))

    @router.get("/sets", summary="The eval sets of a tenant, of the operator, or all")
    async def list_sets(tenant_id: str | None = None, every_tenant: bool = False) -> dict[str, Any]:
        rows = await evals.store.sets(tenant_id, every_tenant=every_tenant)
        return {"object": "list", "data": [set_view(row) for row in rows]}

    @router.get("/sets/{set_id}", summary="An eval set and its latest runs")
    async def get_set(set_id: str) -> dict[str, Any]:
        row = await evals.require_set(set_id)
        runs = await evals.store.runs(set_id)
        return {**set_view(row), "items": row.items, "runs": [run_view(run) for run in runs]}

    @router.delete("/sets/{set_id}", summary="Delete an eval set and its runs")
    async def delete_set(set_id: str) -> dict[str, Any]:
        await evals.require_set(set_id)
        await evals.store.delete_set(set_id)
        return {"id": set_id, "object": "eval_set.deleted", "deleted": True}

    @router.post("/sets/{set_id}/runs", summary="Run the set now (a job of the job runner)")
    async def run_set(set_id: str) -> dict[str, Any]:
        record = await evals.submit_run(await evals.require_set(set_id))
        return {"job_id": record.id, "status": record.status}

    @router.get("/sets/{set_id}/runs", summary="The set's runs, oldest first")
    async def list_runs(set_id: str) -> dict[str, Any]:
        await evals.require_set(set_id)
        return {"object": "list", "data": [run_view(run) for run in await evals.store.runs(set_id)]}

    return router


async def _check_owner(store: Store, tenant_id: str | None, key_id: str | None) -> None:
    if tenant_id is None:
        if key_id is not None:
            raise InvalidRequest(
                "An operator's set runs as no key; give `tenant_id` with `key_id`.", param="key_id"
            )
        return
    await require_tenant(store, tenant_id)
    key = await store.find_key_by_id(key_id) if key_id is not None else None
    if key is None or key.tenant_id != tenant_id:
        raise InvalidRequest(
            "A tenant's set runs as one of the tenant's keys: give its `key_id`.", param="key_id"
        )


def set_view(row: EvalSetRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "eval_set",
        "name": row.name,
        "model": row.model,
        "tenant_id": row.tenant_id,
        "key_id": row.created_by,
        "item_count": len(row.items),
        "interval_s": row.interval_s,
        "margin": row.margin,
        "created_at": int(row.created_at.replace(tzinfo=UTC).timestamp()),
    }


def run_view(run: EvalRunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "object": "eval_run",
        "set_id": run.set_id,
        "model": run.model,
        "version": run.version,
        "score": run.score,
        "passed": run.passed,
        "total": run.total,
        "regression": run.regression,
        "previous_version": run.previous_version,
        "previous_score": run.previous_score,
        "results": run.results,
        "created_at": int(run.created_at.replace(tzinfo=UTC).timestamp()),
    }
