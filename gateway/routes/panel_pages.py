"""The panel's pages: tenants (list, create, limits), a tenant's keys (create with the secret shown
once, rotate with a grace period, revoke, limits) and the audit log with filters.

Every change goes through `KeyAdmin`, as the JSON admin API's do: stored with its audit entry
(the named user as actor, the client's address) and told to every replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from gateway.auth import KeyAdmin
from gateway.auth.identities import AdminIdentities, Identity
from gateway.errors import InvalidRequest
from gateway.routes.admin import KeyRotate, LimitFields, TenantCreate
from gateway.routes.panel import Panel, audit_rows, render, see_other
from gateway.store import Store
from gateway.store.records import LIMIT_FIELDS
from gateway.store.views import key_view, tenant_view

_NUMBERS = (
    "rpm",
    "tpm",
    "audio_spm",
    "max_concurrent",
    "budget_tokens",
    "budget_usd",
    "fine_tuning_jobs",
    "fine_tuning_models",
)


def limits_from_form(form: Mapping[str, Any]) -> LimitFields:
    """A limits form: an empty box removes that limit; models are comma-separated (empty: all)."""
    values: dict[str, Any] = {}
    for name in _NUMBERS:
        text = str(form.get(name, "")).strip()
        values[name] = text or None
    models = str(form.get("allowed_models", "")).strip()
    values["allowed_models"] = [m.strip() for m in models.split(",") if m.strip()] if models else None
    values["budget_period"] = str(form.get("budget_period", "month")) or "month"
    return _validated(LimitFields, values)


def _validated(model: type[Any], values: dict[str, Any]) -> Any:
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from None


def _changes(limits: LimitFields) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in LIMIT_FIELDS}


def add_tenant_pages(router: APIRouter, panel: Panel, keys: KeyAdmin, store: Store) -> None:
    @router.get("/tenants")
    async def tenants(request: Request) -> Response:
        identity, csrf = await panel.who(request)
        rows = [tenant_view(t) for t in await store.list_tenants() if identity.sees_tenant(t.id)]
        return render(request, "tenants.html", csrf=csrf, tenants=rows)

    @router.post("/tenants")
    async def create_tenant(request: Request) -> Response:
        identity, form = await panel.acting(request)
        identity.require_all_tenants()
        limits = limits_from_form(form)
        body = _validated(TenantCreate, {"name": str(form.get("name", "")).strip(), **limits.model_dump()})
        tenant = await keys.create_tenant(body.name, body.limits(), audit=panel.audit(request, identity))
        return see_other(f"/tenants/{tenant.id}")

    @router.get("/tenants/{tenant_id}")
    async def tenant_page(request: Request, tenant_id: str) -> Response:
        identity, csrf = await panel.who(request)
        identity.require_tenant(tenant_id)
        tenant = tenant_view(await keys.get_tenant(tenant_id))
        rows = [key_view(k) for k in await store.list_keys(tenant_id)]
        return render(request, "tenant.html", csrf=csrf, tenant=tenant, keys=rows)

    @router.post("/tenants/{tenant_id}/limits")
    async def tenant_limits(request: Request, tenant_id: str) -> Response:
        identity, form = await panel.acting(request)
        identity.require_tenant(tenant_id)
        identity.require_all_tenants()
        changes = _changes(limits_from_form(form))
        await keys.update_tenant(tenant_id, changes, audit=panel.audit(request, identity))
        return see_other(f"/tenants/{tenant_id}")

    @router.post("/tenants/{tenant_id}/keys")
    async def create_key(request: Request, tenant_id: str) -> Response:
        identity, form = await panel.acting(request)
        identity.require_tenant(tenant_id)
        identity.require_write()
        name = str(form.get("name", "")).strip()[:200]
        limits = limits_from_form(form)
        key, secret = await keys.create_key(
            tenant_id,
            name=name,
            limits=limits.limits(),
            expires_at=None,
            audit=panel.audit(request, identity),
        )
        return render(request, "secret.html", key=key_view(key), secret=secret, action="created")

    add_key_pages(router, panel, keys)


def add_key_pages(router: APIRouter, panel: Panel, keys: KeyAdmin) -> None:
    """One key's changes: rotate (the new secret shown once), revoke, limits."""

    async def tenant_of_key(identity: Identity, key_id: str) -> dict[str, Any]:
        key = key_view(await keys.get_key(key_id))
        identity.require_tenant(key["tenant_id"])  # a tampered key id: the 404 of a missing key
        return key

    @router.post("/keys/{key_id}/rotate")
    async def rotate_key(request: Request, key_id: str) -> Response:
        identity, form = await panel.acting(request)
        key = await tenant_of_key(identity, key_id)
        identity.require_write()
        grace = _validated(KeyRotate, {"grace_seconds": str(form.get("grace_seconds", "0")).strip() or "0"})
        rotated, secret = await keys.rotate_key(
            key["id"], grace=timedelta(seconds=grace.grace_seconds), audit=panel.audit(request, identity)
        )
        return render(request, "secret.html", key=key_view(rotated), secret=secret, action="rotated")

    @router.post("/keys/{key_id}/revoke")
    async def revoke_key(request: Request, key_id: str) -> Response:
        identity, _ = await panel.acting(request)
        key = await tenant_of_key(identity, key_id)
        identity.require_write()
        await keys.revoke_key(key["id"], audit=panel.audit(request, identity))
        return see_other(f"/tenants/{key['tenant_id']}")

    @router.post("/keys/{key_id}/limits")
    async def key_limits(request: Request, key_id: str) -> Response:
        identity, form = await panel.acting(request)
        key = await tenant_of_key(identity, key_id)
        identity.require_write()
        changes = _changes(limits_from_form(form))
        await keys.update_key(key["id"], changes, audit=panel.audit(request, identity))
        return see_other(f"/tenants/{key['tenant_id']}")


def add_audit_page(router: APIRouter, panel: Panel, identities: AdminIdentities) -> None:
    @router.get("/audit")
    async def audit(
        request: Request,
        actor: str = "",
        action: str = "",
        target_id: str = "",
    ) -> Response:
        identity, csrf = await panel.who(request)
        filters = {
            "actor": actor.strip()[:100],
            "action": action.strip()[:64],
            "target_id": target_id.strip()[:40],
        }
        events = await identities.store.audit_page(
            limit=200,
            actor=filters["actor"] or None,
            action=filters["action"] or None,
            target_id=filters["target_id"] or None,
            tenant_id=None if identity.all_tenants else (identity.tenant_id or "-"),
        )
        return render(request, "audit.html", csrf=csrf, events=audit_rows(events), filters=filters)
