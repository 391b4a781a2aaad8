"""The panel's PII page (/admin/ui/pii): each tenant's redaction policy (its own, or the operator's
default), and for owners and operators a form per tenant to set it (where to redact, which entities,
the score threshold) or to drop back to the default: the admin API's `/admin/pii/policies/{id}` in a
form, audited the same way. Served only with PII redaction on (docs/governance.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from gateway.auth.identities import AdminIdentities
from gateway.errors import InvalidRequest
from gateway.http.client_address import TrustedProxies
from gateway.protocol.pii import Entity, PiiPolicy
from gateway.routes.admin import require_tenant
from gateway.routes.panel import panel_base, render, see_other
from gateway.services.pii import PiiPolicies
from gateway.store import Store

ENTITIES: tuple[str, ...] = get_args(Entity)


def panel_pii_router(
    identities: AdminIdentities,
    policies: PiiPolicies,
    store: Store,
    *,
    proxies: TrustedProxies | None = None,
    cookie_secure: str = "auto",
) -> APIRouter:
    panel, router = panel_base(identities, proxies, cookie_secure)

    @router.get("/pii")
    async def pii_page(request: Request) -> Response:
        identity, csrf = await panel.who(request)
        rows = []
        for tenant in await store.list_tenants():
            if identity.sees_tenant(tenant.id):
                own = await policies.stored(tenant.id)
                rows.append(
                    {
                        "id": tenant.id,
                        "name": tenant.name,
                        "own": own is not None,
                        **(own or policies.default).model_dump(),
                    }
                )
        return render(
            request,
            "pii.html",
            csrf=csrf,
            tenants=rows,
            entities=ENTITIES,
            editable=identity.all_tenants and identity.can_write,
        )

    @router.post("/pii/{tenant_id}")
    async def set_policy(request: Request, tenant_id: str) -> Response:
        identity, form = await panel.acting(request)
        identity.require_tenant(tenant_id)
        identity.require_all_tenants()
        await require_tenant(store, tenant_id)  # a missing one is a 404
        audit = panel.audit(request, identity)
        if form.get("action") == "default":
            await policies.set(tenant_id, None, audit)
        else:
            await policies.set(tenant_id, _policy(form), audit)
        return see_other("/pii")

    return router


def _policy(form: Mapping[str, Any]) -> PiiPolicy:
    getter = getattr(form, "getlist", None)
    entities = list(getter("entities")) if getter is not None else []
    try:
        return PiiPolicy.model_validate(
            {
                "store": form.get("store") == "on",
                "prompt": form.get("prompt") == "on",
                "entities": entities,
                "threshold": float(str(form.get("threshold", "0.35")) or 0.35),
            }
        )
    except (ValidationError, ValueError) as exc:
        raise InvalidRequest("Choose known entities and a threshold between 0 and 1.", param="pii") from exc
