"""The panel's stored-data page (/admin/ui/data): for one tenant the panel user may see, or one end
user of it, how many rows of each kind of data Tantra holds (ledger rows, stored completions,
responses, conversations, files, batches, memories, vector stores, feedback, fine-tuning jobs,
moderation flags...), counted by the GDPR registry's own sweep, so the page shows exactly what an
export would gather and an erasure remove.

From the same page an owner, an operator or the tenant's own admin starts an export or an erasure
(the admin API's `POST /admin/tenants/{id}/exports`, `/erasures` in a form, with the same rules and
the same `Gdpr` service; docs/governance.md): an erasure only once the user id (or, for a whole
tenant, the tenant id) is typed again. The job's page shows its status and, for a finished export,
the ZIP's download link (an auditor sees the status but downloads nothing: it is personal data).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.errors import InvalidRequest, NotFound
from gateway.routes.admin import require_tenant
from gateway.routes.gdpr_admin import Actor, download_export, job_view
from gateway.routes.panel import Panel, render, see_other
from gateway.services.gdpr import ERASE, EXPORT, Gdpr
from gateway.store import Store
from gateway.store.gdpr import Subject
from gateway.store.gdpr_store import GdprStore

EndUser = Annotated[str | None, Query(max_length=256)]
_KINDS = {"exports": EXPORT, "erasures": ERASE}


def add_data_page(
    router: APIRouter, panel: Panel, store: Store, gdpr: GdprStore, jobs: Gdpr | None = None
) -> None:
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
            jobs=jobs is not None and identity.can_write,
        )

    if jobs is not None:
        add_gdpr_jobs(router, panel, store, jobs)


def add_gdpr_jobs(router: APIRouter, panel: Panel, store: Store, gdpr: Gdpr) -> None:
    @router.post("/data/{tenant_id}/{kind}")
    async def start_job(request: Request, tenant_id: str, kind: str) -> Response:
        identity, form = await panel.acting(request)
        job_kind = _job_kind(kind)
        identity.require_tenant(tenant_id)
        identity.require_write()
        await require_tenant(store, tenant_id)
        user = str(form.get("user", "")).strip()[:256] or None
        if job_kind == ERASE and str(form.get("confirm", "")).strip() != (user or tenant_id):
            named = "the end user's id" if user else "the tenant's id"
            raise InvalidRequest(f"To erase, type {named} again in the confirmation box.", param="confirm")
        if job_kind == EXPORT and not gdpr.exports_stored:
            raise InvalidRequest(
                "Exports are kept in the blob store: enable the Files API (TANTRA_FILES_ENABLED)."
            )
        record = await gdpr.request(job_kind, tenant_id, user, panel.audit(request, identity))
        return see_other(f"/data/{tenant_id}/{kind}/{record.id}")

    @router.get("/data/{tenant_id}/{kind}/{job_id}")
    async def job_page(request: Request, tenant_id: str, kind: str, job_id: str) -> Response:
        identity, csrf = await panel.who(request)
        job_kind = _job_kind(kind)
        identity.require_tenant(tenant_id)
        record = await gdpr.get(job_kind, tenant_id, job_id[:64])
        if record is None:
            raise NotFound(f"No {kind[:-1]} job {job_id!r} for tenant {tenant_id!r}.")
        return render(request, "gdpr_job.html", csrf=csrf, kind=kind, job=job_view(record))

    @router.get("/data/{tenant_id}/exports/{job_id}/content")
    async def export_content(request: Request, tenant_id: str, job_id: str) -> Response:
        identity, _ = await panel.who(request)
        identity.require_tenant(tenant_id)
        record = await gdpr.get(EXPORT, tenant_id, job_id[:64])
        if record is None:
            raise NotFound(f"No export job {job_id!r} for tenant {tenant_id!r}.")
        return await download_export(gdpr, record, Actor(identity, panel.audit(request, identity)))


def _job_kind(kind: str) -> str:
    found = _KINDS.get(kind)
    if found is None:
        raise NotFound(f"No kind of GDPR job {kind!r} (exports or erasures).")
    return found
