"""/admin/tenants/{tenant_id}/learning-policy: a tenant's learning loop (docs/fine-tuning.md "The
learning loop"): its policy (set, read, removed; audited), the versions it made with the one its
alias points at, and a rollback to an older version (audited)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import AdminGuard
from gateway.errors import InvalidRequest, NotFound
from gateway.http.client_address import TrustedProxies
from gateway.routes.admin import audited_admin_router, require_tenant
from gateway.services.learning_loop import LearningLoop, alias
from gateway.store import Store, utcnow
from gateway.store.owned import Owner
from gateway.store.records import AuditContext


class LearningPolicy(BaseModel):
    """When and how the tenant's feedback becomes a new adapter version."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # New feedback rows (since the last cycle) that start a cycle.
    min_new_feedback: int = Field(20, ge=1, le=1_000_000)
    # The share of the tenant's feedback kept out of training to evaluate the versions on.
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    base_model: str = Field(min_length=1, max_length=200)
    method: Literal["supervised", "dpo"] = "supervised"
    # The alias is ft:<base_model>:<tenant>:<suffix>; the versions' names end with their job id.
    suffix: str = Field("loop", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    # The key the loop acts as: its training jobs and held-out answers are this key's.
    key_id: str = Field(min_length=1, max_length=64)
    # How a held-out answer is graded against the wanted one: the evals service's `exact` scorer,
    # or its `judge` (the judge model's 0..1 grade, asked as the policy's key, with the rubric).
    scorer: Literal["exact", "judge"] = "exact"
    judge_model: str | None = Field(None, min_length=1, max_length=200)
    rubric: str | None = Field(None, min_length=1, max_length=4000)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A version's full name (ft:<base>:<tenant>:<suffix>:<id>) or its fine-tuning job's id.
    model: str = Field(min_length=1, max_length=300)


def learning_admin_router(
    guard: AdminGuard,
    loop: LearningLoop,
    store: Store,
    bases: set[str],
    proxies: TrustedProxies | None = None,
) -> APIRouter:
    router = audited_admin_router(guard, proxies, "/admin/tenants")

    @router.put("/{tenant_id}/learning-policy", summary="Set the tenant's learning loop policy")
    async def set_policy(tenant_id: str, body: LearningPolicy, request: Request) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        if body.base_model not in bases:
            raise InvalidRequest(
                f"Model {body.base_model} is not available for fine-tuning.", param="base_model"
            )
        if body.scorer == "judge" and body.judge_model is None:
            raise InvalidRequest("The `judge` scorer needs `judge_model`.", param="judge_model")
        key = await store.find_key_by_id(body.key_id)
        if key is None or key.tenant_id != tenant_id:
            message = "The loop acts as one of the tenant's keys: give its `key_id`."
            raise InvalidRequest(message, param="key_id")
        policy = body.model_dump()
        await loop.store.set_policy(tenant_id, policy, at=utcnow(), audit=_audit(request))
        return await _view(loop, tenant_id)

    @router.get("/{tenant_id}/learning-policy", summary="The tenant's learning loop: policy and versions")
    async def get_policy(tenant_id: str) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        return await _view(loop, tenant_id)

    @router.delete("/{tenant_id}/learning-policy", summary="Remove the tenant's learning loop policy")
    async def delete_policy(tenant_id: str, request: Request) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        await loop.store.set_policy(tenant_id, None, at=utcnow(), audit=_audit(request))
        return {"tenant_id": tenant_id, "object": "learning_policy.deleted", "deleted": True}

    @router.post("/{tenant_id}/learning-policy/rollback", summary="Point the alias at an older version")
    async def rollback(tenant_id: str, body: Rollback, request: Request) -> dict[str, Any]:
        await require_tenant(store, tenant_id)
        view = await _view(loop, tenant_id)
        version = next((v for v in view["versions"] if body.model in (v["model"], v["job_id"])), None)
        if version is None:
            raise NotFound(f"The learning loop of {tenant_id} has no version {body.model}.", param="model")
        details = {"job": version["job_id"], "model": version["model"], "from": view["promoted_model"]}
        audit = (_audit(request), "learning_policy.rollback", details)
        changes = {"promoted": version["job_id"]}
        await loop.store.update_state(tenant_id, changes, at=utcnow(), audit=audit)
        return await _view(loop, tenant_id)

    return router


async def _view(loop: LearningLoop, tenant_id: str) -> dict[str, Any]:
    policy = await loop.store.policy(tenant_id)
    if policy is None:
        raise NotFound(f"Tenant {tenant_id} has no learning policy.", param="tenant_id")
    state = await loop.store.state(tenant_id)
    name = alias(str(policy["base_model"]), tenant_id, str(policy["suffix"]))
    versions = [
        {"job_id": row.id, "model": row.fine_tuned_model, "created_at": row.created_at.isoformat()}
        for row in await loop.jobs.models(Owner(tenant_id))
        if row.model == policy["base_model"] and row.suffix == policy["suffix"]
    ]
    promoted = next((v["model"] for v in versions if v["job_id"] == state.get("promoted")), None)
    return {
        "object": "learning_policy",
        "tenant_id": tenant_id,
        "policy": policy,
        "alias": name,
        "promoted_model": promoted,
        "cycle": state.get("cycle"),
        "feedback_cursor": state.get("cursor", 0),
        "versions": versions,
    }


def _audit(request: Request) -> AuditContext:
    audit = request.state.admin_audit
    assert isinstance(audit, AuditContext)
    return audit
