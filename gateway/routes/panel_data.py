"""The panel's stored-data page (/admin/ui/data): for one tenant the panel user may see, or one end
user of it, how many rows of each kind of data Tantra holds (ledger rows, stored completions,
responses, conversations, files, batches, memories, vector stores, feedback, fine-tuning jobs,
moderation flags...), counted by the GDPR registry's own sweep, so the page shows exactly what an
export would gather and an erasure remove. The export and erasure themselves are the admin API's
jobs (`POST /admin/tenants/{id}/exports`, `/erasures`; docs/governance.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.routes.panel import Panel, render
from gateway.store import Store
from gateway.store.gdpr import Subject
from gateway.store.gdpr_store import GdprStore

EndUser = Annotated[str | None, Query(max_length=256)]


def add_data_page(router: APIRouter, panel: Panel, store: Store, gdpr: GdprStore) -> None:
    @router.get("/data")
    async def data_page(request: Request, tenant_id: str | None = None, user: EndUser = None) -> Response:
        identity, csrf = await panel.who(request)
        tenants = [t for t in await store.list_tenants() if identity.sees_tenant(t.id)]
        chosen = tenant_id or (tenants[0].id if tenants else None)
        counts: dict[str, int] = {}
        if chosen is not None:
            identity.require_tenant(chosen)  # a tampered id is the 404 of a missing tenant
            counts = await gdpr.remaining(Subject(chosen, user or None))
        return render(
            request,
            "data.html",
            csrf=csrf,
            tenants=tenants,
            chosen=chosen,
            user=user or "",
            counts=sorted(counts.items()),
            total=sum(counts.values()),
        )
