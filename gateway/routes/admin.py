"""The admin API under /admin: tenants, keys (create, rotate, revoke), limits, usage, audit, status.

Every route needs the admin key (`TANTRA_ADMIN_KEY`). Limits are fields of a tenant or a key, set
when it is created and changed with PATCH; `null` removes a limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from gateway.auth import AdminGuard, KeyAdmin
from gateway.errors import InvalidRequest, NotFound
from gateway.http.client_address import TrustedProxies, client_address
from gateway.protocol import ErrorResponse
from gateway.routes.csv_export import csv_response
from gateway.store import GROUPS, AuditContext, Limits, NotFoundInStore, Store, UsageLedger
from gateway.store.records import LIMIT_FIELDS
from gateway.store.views import audit_view, key_view, tenant_view

StatusFn = Callable[[], Awaitable[dict[str, Any]]]


# Bounded so that every value fits its column on SQLite and PostgreSQL alike.
_Count = Annotated[int, Field(ge=1, le=2**31 - 1)]
_Tokens = Annotated[int, Field(ge=0, le=2**62)]
_Dollars = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class LimitFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed_models: list[str] | None = Field(None, description="Models this may use; null: all.")
    rpm: _Count | None = Field(None, description="Requests per window.")
    tpm: _Count | None = Field(None, description="Prompt plus completion tokens per window.")
    audio_spm: _Count | None = Field(
        None, description="Seconds of audio heard (transcriptions, chat audio parts) per window."
    )
    max_concurrent: _Count | None = Field(None, description="Requests in flight at once.")
    budget_tokens: _Tokens | None = Field(None, description="Tokens per budget period.")
    budget_usd: _Dollars | None = Field(None, description="Spend (USD) per budget period.")
    budget_period: Literal["day", "month"] = "month"
    batch_tokens: _Tokens | None = Field(
        None,
        description="Input tokens of batches not yet ended (OpenAI's enqueued tokens); a batch that "
        "would go over fails with token_limit_exceeded. Keys without one: TANTRA_BATCH_TOKEN_QUOTA.",
    )
    memory: bool | None = Field(
        None,
        description="Memory in chat and responses for requests naming an end user (docs/memory.md); "
        "null: the tenant's setting, then the operator's TANTRA_MEMORY_CHAT_DEFAULT.",
    )
    fine_tuning_jobs: _Count | None = Field(
        None,
        description="Fine-tuning jobs active at once (validating, queued, running); past it a new job "
        "is a 429. Null: TANTRA_FINE_TUNING_MAX_JOBS.",
    )
    fine_tuning_models: _Count | None = Field(
        None,
        description="Fine-tuned models kept, active jobs counted; past it a new job is a 400. "
        "Null: TANTRA_FINE_TUNING_MAX_MODELS.",
    )

    def limits(self) -> Limits:
        return Limits(
            allowed_models=tuple(self.allowed_models) if self.allowed_models is not None else None,
            rpm=self.rpm,
            tpm=self.tpm,
            audio_spm=self.audio_spm,
            max_concurrent=self.max_concurrent,
            budget_tokens=self.budget_tokens,
            budget_usd=self.budget_usd,
            budget_period=self.budget_period,
            batch_tokens=self.batch_tokens,
            memory=self.memory,
            fine_tuning_jobs=self.fine_tuning_jobs,
            fine_tuning_models=self.fine_tuning_models,
        )

    def changes(self, also: tuple[str, ...]) -> dict[str, Any]:
        """Only the fields the client sent: an explicit null removes that limit."""
        return {name: getattr(self, name) for name in self.model_fields_set if name in (*LIMIT_FIELDS, *also)}


class TenantCreate(LimitFields):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    disabled: bool = False


class TenantUpdate(LimitFields):
    # Absent means unchanged; these cannot be null.
    name: Annotated[str, Field(min_length=1, max_length=200)] = None  # type: ignore[assignment]
    disabled: bool = None  # type: ignore[assignment]


class KeyCreate(LimitFields):
    tenant_id: str
    name: Annotated[str, Field(max_length=200)] = ""
    expires_at: datetime | None = Field(None, description="When the key stops working (ISO 8601).")


class KeyUpdate(LimitFields):
    name: Annotated[str, Field(max_length=200)] = None  # type: ignore[assignment]
    expires_at: datetime | None = None


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: Annotated[float, Field(ge=0, le=7 * 86_400)] = Field(
        0,
        description="How long the old secret keeps working; 0 stops it (and any older one) at once. "
        "Above 0 while an earlier rotation's grace period runs: 409, the original secret would end.",
    )


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request.",
        401: "Missing or wrong admin key.",
        403: "The admin API is disabled (no admin key configured).",
        404: "No such tenant or key.",
        409: "A tenant of that name exists, or the key is revoked.",
    }.items()
}


async def require_tenant(store: Store, tenant_id: str) -> None:
    """The admin routes' 404 for a tenant that does not exist."""
    try:
        await store.get_tenant(tenant_id)
    except NotFoundInStore:
        raise NotFound(f"No tenant with id {tenant_id!r}.") from None


def admin_router(
    guard: AdminGuard,
    keys: KeyAdmin,
    store: Store,
    ledger: UsageLedger,
    status: StatusFn,
    proxies: TrustedProxies | None = None,
) -> APIRouter:
    """`proxies`: whose X-Forwarded-For and X-Forwarded-User the audit log believes (none by default)."""
    router = audited_admin_router(guard, proxies, "/admin")
    _add_tenant_routes(router, keys, store)
    _add_key_routes(router, keys, store)
    _add_report_routes(router, store, ledger, status)
    return router


def _add_tenant_routes(router: APIRouter, keys: KeyAdmin, store: Store) -> None:
    """/admin/tenants: create, list, read and change tenants (changes go through KeyAdmin, audited)."""

    @router.post("/tenants", status_code=201, summary="Create a tenant, with its limits")
    async def create_tenant(body: TenantCreate, request: Request) -> dict[str, Any]:
        tenant = await keys.create_tenant(
            body.name, body.limits(), disabled=body.disabled, audit=_audit(request)
        )
        return tenant_view(tenant)

    @router.get("/tenants", summary="List tenants")
    async def list_tenants() -> dict[str, Any]:
        return {"object": "list", "data": [tenant_view(t) for t in await store.list_tenants()]}

    @router.get("/tenants/{tenant_id}", summary="One tenant")
    async def get_tenant(tenant_id: str) -> dict[str, Any]:
        return tenant_view(await keys.get_tenant(tenant_id))

    @router.patch("/tenants/{tenant_id}", summary="Change a tenant's name, limits, or disable it")
    async def update_tenant(tenant_id: str, body: TenantUpdate, request: Request) -> dict[str, Any]:
        changes = body.changes(("name", "disabled"))
        return tenant_view(await keys.update_tenant(tenant_id, changes, audit=_audit(request)))


def _add_key_routes(router: APIRouter, keys: KeyAdmin, store: Store) -> None:
    """/admin/keys: create, list, read, change, rotate and revoke API keys (audited, like tenants)."""

    @router.post("/keys", status_code=201, summary="Create an API key; its secret is shown only here")
    async def create_key(body: KeyCreate, request: Request) -> dict[str, Any]:
        key, secret = await keys.create_key(
            body.tenant_id,
            name=body.name,
            limits=body.limits(),
            expires_at=_naive_utc(body.expires_at),
            audit=_audit(request),
        )
        return {**key_view(key), "key": secret}

    @router.get("/keys", summary="List API keys (never their secrets)")
    async def list_keys(tenant_id: str | None = None) -> dict[str, Any]:
        return {"object": "list", "data": [key_view(k) for k in await store.list_keys(tenant_id)]}

    @router.get("/keys/{key_id}", summary="One API key")
    async def get_key(key_id: str) -> dict[str, Any]:
        return key_view(await keys.get_key(key_id))

    @router.patch("/keys/{key_id}", summary="Change a key's name, expiry or limits")
    async def update_key(key_id: str, body: KeyUpdate, request: Request) -> dict[str, Any]:
        changes = body.changes(("name", "expires_at"))
        if "expires_at" in changes:
            changes["expires_at"] = _naive_utc(changes["expires_at"])
        return key_view(await keys.update_key(key_id, changes, audit=_audit(request)))

    @router.post("/keys/{key_id}/rotate", summary="Give a key a new secret (shown only here)")
    async def rotate_key(key_id: str, request: Request, body: KeyRotate | None = None) -> dict[str, Any]:
        grace = timedelta(seconds=body.grace_seconds if body is not None else 0)
        key, secret = await keys.rotate_key(key_id, grace=grace, audit=_audit(request))
        return {**key_view(key), "key": secret}

    @router.post("/keys/{key_id}/revoke", summary="Revoke a key for good")
    async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
        return key_view(await keys.revoke_key(key_id, audit=_audit(request)))


def _add_report_routes(router: APIRouter, store: Store, ledger: UsageLedger, status: StatusFn) -> None:
    """What an operator reads: usage totals from the ledger, the audit log, this replica's status."""

    @router.get(
        "/usage",
        summary="Usage totals from the ledger, grouped; JSON or CSV",
        response_model=None,
        responses={200: {"content": {"application/json": {}, "text/csv": {}}, "description": "Totals"}},
    )
    async def usage(
        group_by: Annotated[
            str, Query(description="Any of tenant, key, model, served_model, day.")
        ] = "tenant,key,model,day",
        start: Annotated[datetime | date | None, Query(description="From this UTC time or day.")] = None,
        end: Annotated[datetime | date | None, Query(description="Before this UTC time or day.")] = None,
        tenant_id: str | None = None,
        key_id: str | None = None,
        model: Annotated[str | None, Query(description="The model asked for.")] = None,
        served_model: Annotated[
            str | None, Query(description="The model that answered (a fallback's); costs are its.")
        ] = None,
        format: Literal["json", "csv"] = "json",
    ) -> dict[str, Any] | Response:
        groups = [g.strip() for g in group_by.split(",") if g.strip()]
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or len(set(groups)) != len(groups):
            raise InvalidRequest(
                f"`group_by` takes distinct names among {', '.join(GROUPS)}; got {group_by!r}.",
                param="group_by",
            )
        await ledger.flush()  # this replica's latest rows; others write theirs within a flush interval
        rows = await store.usage_report(
            group_by=groups,  # type: ignore[arg-type]
            start=_as_time(start),
            end=_as_time(end),
            tenant_id=tenant_id,
            key_id=key_id,
            model=model,
            served_model=served_model,
        )
        if format == "csv":
            return csv_response(
                rows, [*(f"{g}_id" if g in ("tenant", "key") else g for g in groups), *USAGE_TOTALS]
            )
        return {"object": "list", "group_by": groups, "data": rows}

    @router.get("/audit", summary="The audit log, newest first")
    async def audit_log(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int, Query(ge=1, le=2**62)] | None = None,
        target_id: str | None = None,
    ) -> dict[str, Any]:
        events = await store.list_audit(limit=limit, before_id=before_id, target_id=target_id)
        return {"object": "list", "data": [audit_view(e) for e in events]}

    @router.get("/status", summary="Redis, limiter, ledger and key-cache state of this replica")
    async def admin_status() -> dict[str, Any]:
        return await status()


USAGE_TOTALS = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "avg_latency_ms",
    "errors",
    # Added later: at the end, so that a CSV read by position keeps its columns.
    "audio_seconds",
    "media_requests",
]


def audited_admin_router(guard: AdminGuard, proxies: TrustedProxies | None, prefix: str) -> APIRouter:
    """A router of the admin API under `prefix`: every route needs the admin key, and its changes are
    audited as `request.state.admin_audit` (`proxies`: whose X-Forwarded-For and X-Forwarded-User the
    audit log believes; none by default)."""
    trusted = proxies or TrustedProxies()

    async def require_admin(request: Request) -> None:
        guard.check(request.headers)
        request.state.admin_audit = audit_context(request, trusted)

    # A router-wide dependency runs before the body is validated: no key, no other answer than 401.
    return APIRouter(
        prefix=prefix, tags=["admin"], responses=ADMIN_ERRORS, dependencies=[Depends(require_admin)]
    )


def audit_context(request: Request, proxies: TrustedProxies) -> AuditContext:
    """Who made the change: the admin key's holder, named by an authenticating proxy when a trusted
    one says so, from the address a trusted proxy forwarded (else the peer's own)."""
    peer = request.client.host if request.client else None
    user = proxies.forwarded_user(peer, request.headers)
    return AuditContext(
        actor=f"admin:{user}" if user else "admin",
        request_id=getattr(request.state, "request_id", None),
        client_ip=client_address(request),
    )


def _audit(request: Request) -> AuditContext:
    """The context `require_admin` made for this request (it runs before every admin route)."""
    audit = request.state.admin_audit
    assert isinstance(audit, AuditContext)
    return audit


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _as_time(value: datetime | date | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return _naive_utc(value)
    return datetime(value.year, value.month, value.day)
