"""/admin/tenants/{id}/exports and /erasures: GDPR export and erasure of a tenant or one of its end
users, as jobs (docs/governance.md).

Who may: the shared admin key (automation's service identity), or a named admin's panel session
(its cookie, and for a POST the session's CSRF token in `x-csrf-token`): owners and operators for
any tenant, a tenant admin for its own (another tenant is a 404, as a missing one), an auditor only
reads a job's status (an export's content is personal data: 403).
"""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.auth import AdminGuard, presented_key
from gateway.auth.identities import AdminIdentities, BadCsrf, Forbidden, Identity, NotLoggedIn, csrf_matches
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.http.client_address import TrustedProxies, client_address
from gateway.jobs import JobRecord
from gateway.routes.admin import ADMIN_ERRORS, audit_context, require_tenant
from gateway.routes.panel import SESSION_COOKIE
from gateway.services.gdpr import ERASE, EXPORT, Gdpr
from gateway.store import AuditContext, Store

_OBJECTS = {EXPORT: "gdpr.export", ERASE: "gdpr.erasure"}


class SubjectBody(BaseModel):
    """The end user (OpenAI's `user`, or mem0's `user_id`); neither: the whole tenant."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=256)
    user_id: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_name(self) -> SubjectBody:
        if self.user and self.user_id and self.user != self.user_id:
            raise ValueError("give `user` or `user_id`, not two different names")
        return self


class Actor:
    """The admin key's holder or a panel session's person, and what they may do."""

    def __init__(self, identity: Identity | None, audit: AuditContext) -> None:
        self.identity = identity
        self.audit = audit

    def require(self, tenant_id: str, *, write: bool) -> None:
        if self.identity is None:
            return
        self.identity.require_tenant(tenant_id)
        if write:
            self.identity.require_write()


class _Access:
    """Who is asking, from the admin key or a panel session, checked against the tenant."""

    def __init__(
        self, guard: AdminGuard, store: Store, identities: AdminIdentities, proxies: TrustedProxies
    ) -> None:
        self.guard = guard
        self.store = store
        self.identities = identities
        self.proxies = proxies

    async def actor(self, request: Request, tenant_id: str, *, write: bool) -> Actor:
        token = request.cookies.get(SESSION_COOKIE)
        if presented_key(request.headers) is not None or token is None:
            self.guard.check(request.headers)
            who = Actor(None, audit_context(request, self.proxies))
        else:
            who = await self._session(request, token, write=write)
        who.require(tenant_id, write=write)
        await require_tenant(self.store, tenant_id)
        return who

    async def _session(self, request: Request, token: str, *, write: bool) -> Actor:
        found = await self.identities.session(token)
        if found is None:
            raise NotLoggedIn()
        identity, csrf = found
        if write and not csrf_matches(csrf, request.headers.get("x-csrf-token")):
            raise BadCsrf()
        request_id = getattr(request.state, "request_id", None)
        return Actor(identity, AuditContext(identity.actor, request_id, client_address(request)))


def gdpr_admin_router(
    guard: AdminGuard,
    gdpr: Gdpr,
    store: Store,
    identities: AdminIdentities,
    proxies: TrustedProxies | None = None,
) -> APIRouter:
    access = _Access(guard, store, identities, proxies or TrustedProxies())
    router = APIRouter(prefix="/admin/tenants/{tenant_id}", tags=["admin"], responses=ADMIN_ERRORS)
    actor = access.actor

    async def submit(kind: str, request: Request, tenant_id: str, body: SubjectBody | None) -> dict[str, Any]:
        who = await actor(request, tenant_id, write=True)
        if kind == EXPORT and not gdpr.exports_stored:
            raise InvalidRequest(
                "Exports are kept in the blob store: enable the Files API (TANTRA_FILES_ENABLED)."
            )
        user = (body.user or body.user_id) if body is not None else None
        return job_view(await gdpr.request(kind, tenant_id, user, who.audit))

    async def found(kind: str, request: Request, tenant_id: str, job_id: str) -> tuple[JobRecord, Actor]:
        who = await actor(request, tenant_id, write=False)
        record = await gdpr.get(kind, tenant_id, job_id)
        if record is None:
            raise NotFound(f"No {_OBJECTS[kind]} {job_id!r} for tenant {tenant_id!r}.")
        return record, who

    @router.post("/exports", summary="Export a tenant's or an end user's data (a job; its ZIP at /content)")
    async def export(tenant_id: str, request: Request, body: SubjectBody | None = None) -> dict[str, Any]:
        return await submit(EXPORT, request, tenant_id, body)

    @router.get("/exports/{job_id}", summary="An export job")
    async def get_export(tenant_id: str, job_id: str, request: Request) -> dict[str, Any]:
        return job_view((await found(EXPORT, request, tenant_id, job_id))[0])

    @router.get(
        "/exports/{job_id}/content",
        summary="A finished export's ZIP of JSON files (streamed)",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/zip": {}}, "description": "The ZIP."}},
    )
    async def export_content(tenant_id: str, job_id: str, request: Request) -> StreamingResponse:
        record, who = await found(EXPORT, request, tenant_id, job_id)
        return await download_export(gdpr, record, who)

    @router.post("/erasures", summary="Erase a tenant's or an end user's data everywhere (a job)")
    async def erase(tenant_id: str, request: Request, body: SubjectBody | None = None) -> dict[str, Any]:
        return await submit(ERASE, request, tenant_id, body)

    @router.get("/erasures/{job_id}", summary="An erasure job, its counts and its sweep")
    async def get_erasure(tenant_id: str, job_id: str, request: Request) -> dict[str, Any]:
        return job_view((await found(ERASE, request, tenant_id, job_id))[0])

    return router


async def download_export(gdpr: Gdpr, record: JobRecord, who: Actor) -> StreamingResponse:
    if who.identity is not None and not who.identity.can_write:
        raise Forbidden(f"The {who.identity.role} role cannot download personal data.")
    chunks = gdpr.content(record)
    if chunks is None:
        raise Conflict(f"The export is not ready (status {record.status}).", code="export_not_ready")
    await gdpr.downloaded(record, who.audit)
    disposition = f'attachment; filename="tantra-export-{record.payload.get("tenant_id")}-{record.id}.zip"'
    return StreamingResponse(
        chunks, media_type="application/zip", headers={"content-disposition": disposition}
    )


def job_view(record: JobRecord) -> dict[str, Any]:
    result = record.result
    if isinstance(result, dict):
        result = {name: value for name, value in result.items() if name != "blob_key"}
    return {
        "id": record.id,
        "object": _OBJECTS.get(record.kind, record.kind),
        "status": record.status,
        "tenant_id": record.payload.get("tenant_id"),
        "user": record.payload.get("user"),
        "created_at": _epoch(record.created_at),
        "finished_at": _epoch(record.finished_at) if record.finished_at else None,
        "result": result,
        "error": record.last_error,
    }


def _epoch(at: datetime) -> int:
    return calendar.timegm(at.utctimetuple())  # the store's times are naive UTC
