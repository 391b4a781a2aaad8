"""The panel's read-only "what will expire" page (/admin/ui/retention): per tenant the panel user
may see, each kind's effective retention and how many objects the retention job deletes now and
within a week (docs/governance.md). Changes go through the admin API (`PUT .../retention`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.auth.identities import AdminIdentities
from gateway.http.client_address import TrustedProxies
from gateway.routes.panel import panel_base, render
from gateway.services.retention import Retention
from gateway.store import Store

SOON_DAYS = 7


def panel_retention_router(
    identities: AdminIdentities,
    retention: Retention,
    store: Store,
    *,
    proxies: TrustedProxies | None = None,
    cookie_secure: str = "auto",
) -> APIRouter:
    panel, router = panel_base(identities, proxies, cookie_secure)

    @router.get("/retention")
    async def retention_page(request: Request) -> Response:
        identity, csrf = await panel.who(request)
        scope = None if identity.all_tenants else (identity.tenant_id or "-")
        tenants = [t for t in await store.list_tenants() if identity.sees_tenant(t.id)]
        defaults = retention.defaults()
        own = await retention.store.policies(scope)
        now = await retention.due_by_tenant(scope)
        soon = await retention.due_by_tenant(scope, within_days=SOON_DAYS)
        rows = [
            {
                "id": tenant.id,
                "name": tenant.name,
                "kinds": [
                    {
                        "kind": kind,
                        "days": own.get(kind, {}).get(tenant.id, days),
                        "own": tenant.id in own.get(kind, {}),
                        "now": now[kind].get(tenant.id, 0),
                        "soon": soon[kind].get(tenant.id, 0),
                    }
                    for kind, days in defaults.items()
                ],
            }
            for tenant in tenants
        ]
        return render(
            request, "retention.html", csrf=csrf, tenants=rows, defaults=defaults, soon_days=SOON_DAYS
        )

    return router
