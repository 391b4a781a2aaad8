"""Tantra's own routes as typed resources: the admin API (tenants, keys, usage, audit, status) and
upstream health. Each request is described once (`_calls`) and sent by a sync or an async twin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from typing import Any, Literal

from tantra_client._base import AsyncAPIResource, Call, SyncAPIResource
from tantra_client.types import (
    ApiKey,
    AuditEvent,
    KeyCreate,
    KeyRotate,
    KeyUpdate,
    Tenant,
    TenantCreate,
    TenantUpdate,
    UpstreamHealth,
    UsageReport,
)

GroupBy = Literal["tenant", "key", "model", "served_model", "day"]


class _calls:
    @staticmethod
    def usage(
        group_by: list[GroupBy] | None,
        start: datetime | date | None,
        end: datetime | date | None,
        fmt: str,
        **filters: str | None,
    ) -> Call:
        params: dict[str, Any] = {
            "group_by": ",".join(group_by) if group_by else None,
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "format": fmt,
            **filters,
        }
        return Call("get", "/admin/usage", params=params, admin=True)

    @staticmethod
    def audit(limit: int, before_id: int | None, target_id: str | None) -> Call:
        params = {"limit": limit, "before_id": before_id, "target_id": target_id}
        return Call("get", "/admin/audit", params=params, admin=True)


# ---- sync ----------------------------------------------------------------------------------------


class Tenants(SyncAPIResource):
    def create(self, name: str, **fields: Any) -> Tenant:
        body = TenantCreate(name=name, **fields).payload()
        return Tenant.model_validate(self._json(Call("post", "/admin/tenants", body=body, admin=True)))

    def list(self) -> list[Tenant]:
        data = self._json(Call("get", "/admin/tenants", admin=True))["data"]
        return [Tenant.model_validate(t) for t in data]

    def retrieve(self, tenant_id: str) -> Tenant:
        return Tenant.model_validate(self._json(Call("get", f"/admin/tenants/{tenant_id}", admin=True)))

    def update(self, tenant_id: str, **fields: Any) -> Tenant:
        body = TenantUpdate(**fields).payload()
        call = Call("patch", f"/admin/tenants/{tenant_id}", body=body, admin=True)
        return Tenant.model_validate(self._json(call))


class Keys(SyncAPIResource):
    def create(self, tenant_id: str, **fields: Any) -> ApiKey:
        body = KeyCreate(tenant_id=tenant_id, **fields).payload()
        return ApiKey.model_validate(self._json(Call("post", "/admin/keys", body=body, admin=True)))

    def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        call = Call("get", "/admin/keys", params={"tenant_id": tenant_id}, admin=True)
        return [ApiKey.model_validate(k) for k in self._json(call)["data"]]

    def retrieve(self, key_id: str) -> ApiKey:
        return ApiKey.model_validate(self._json(Call("get", f"/admin/keys/{key_id}", admin=True)))

    def update(self, key_id: str, **fields: Any) -> ApiKey:
        call = Call("patch", f"/admin/keys/{key_id}", body=KeyUpdate(**fields).payload(), admin=True)
        return ApiKey.model_validate(self._json(call))

    def rotate(self, key_id: str, *, grace_seconds: float | None = None) -> ApiKey:
        body = KeyRotate(grace_seconds=grace_seconds).payload() if grace_seconds is not None else None
        call = Call("post", f"/admin/keys/{key_id}/rotate", body=body, admin=True)
        return ApiKey.model_validate(self._json(call))

    def revoke(self, key_id: str) -> ApiKey:
        return ApiKey.model_validate(self._json(Call("post", f"/admin/keys/{key_id}/revoke", admin=True)))


class Audit(SyncAPIResource):
    def list(
        self, *, limit: int = 100, before_id: int | None = None, target_id: str | None = None
    ) -> list[AuditEvent]:
        """One page, newest first; the next page is `before_id=<the last one's id>`."""
        data = self._json(_calls.audit(limit, before_id, target_id))["data"]
        return [AuditEvent.model_validate(e) for e in data]

    def iter(self, *, page_size: int = 100, target_id: str | None = None) -> Iterator[AuditEvent]:
        """Every event, newest first, fetching pages as the loop goes."""
        before: int | None = None
        while True:
            page = self.list(limit=page_size, before_id=before, target_id=target_id)
            yield from page
            if len(page) < page_size:
                return
            before = page[-1].id


class Admin(SyncAPIResource):
    """/admin: needs the admin key (`Tantra(admin_key=...)`)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.tenants = Tenants(client)
        self.keys = Keys(client)
        self.audit = Audit(client)

    def usage(
        self,
        *,
        group_by: list[GroupBy] | None = None,
        start: datetime | date | None = None,
        end: datetime | date | None = None,
        tenant_id: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        served_model: str | None = None,
    ) -> UsageReport:
        call = _calls.usage(
            group_by,
            start,
            end,
            "json",
            tenant_id=tenant_id,
            key_id=key_id,
            model=model,
            served_model=served_model,
        )
        return UsageReport.model_validate(self._json(call))

    def usage_csv(self, *, group_by: list[GroupBy] | None = None, **filters: Any) -> str:
        return self._response(_calls.usage(group_by, None, None, "csv", **filters)).text

    def status(self) -> dict[str, Any]:
        return dict(self._json(Call("get", "/admin/status", admin=True)))


class Health(SyncAPIResource):
    """Upstream health (operator routes: on the operator port when the gateway has one)."""

    def upstreams(self) -> UpstreamHealth:
        return UpstreamHealth.model_validate(self._json(Call("get", "/health/upstreams")))

    def live(self) -> bool:
        return bool(self._json(Call("get", "/livez")).get("status") == "ok")


# ---- async ---------------------------------------------------------------------------------------


class AsyncTenants(AsyncAPIResource):
    async def create(self, name: str, **fields: Any) -> Tenant:
        body = TenantCreate(name=name, **fields).payload()
        return Tenant.model_validate(await self._json(Call("post", "/admin/tenants", body=body, admin=True)))

    async def list(self) -> list[Tenant]:
        data = (await self._json(Call("get", "/admin/tenants", admin=True)))["data"]
        return [Tenant.model_validate(t) for t in data]

    async def retrieve(self, tenant_id: str) -> Tenant:
        return Tenant.model_validate(await self._json(Call("get", f"/admin/tenants/{tenant_id}", admin=True)))

    async def update(self, tenant_id: str, **fields: Any) -> Tenant:
        call = Call("patch", f"/admin/tenants/{tenant_id}", body=TenantUpdate(**fields).payload(), admin=True)
        return Tenant.model_validate(await self._json(call))


class AsyncKeys(AsyncAPIResource):
    async def create(self, tenant_id: str, **fields: Any) -> ApiKey:
        body = KeyCreate(tenant_id=tenant_id, **fields).payload()
        return ApiKey.model_validate(await self._json(Call("post", "/admin/keys", body=body, admin=True)))

    async def list(self, tenant_id: str | None = None) -> list[ApiKey]:
        call = Call("get", "/admin/keys", params={"tenant_id": tenant_id}, admin=True)
        return [ApiKey.model_validate(k) for k in (await self._json(call))["data"]]

    async def retrieve(self, key_id: str) -> ApiKey:
        return ApiKey.model_validate(await self._json(Call("get", f"/admin/keys/{key_id}", admin=True)))

    async def update(self, key_id: str, **fields: Any) -> ApiKey:
        call = Call("patch", f"/admin/keys/{key_id}", body=KeyUpdate(**fields).payload(), admin=True)
        return ApiKey.model_validate(await self._json(call))

    async def rotate(self, key_id: str, *, grace_seconds: float | None = None) -> ApiKey:
        body = KeyRotate(grace_seconds=grace_seconds).payload() if grace_seconds is not None else None
        call = Call("post", f"/admin/keys/{key_id}/rotate", body=body, admin=True)
        return ApiKey.model_validate(await self._json(call))

    async def revoke(self, key_id: str) -> ApiKey:
        call = Call("post", f"/admin/keys/{key_id}/revoke", admin=True)
        return ApiKey.model_validate(await self._json(call))


class AsyncAudit(AsyncAPIResource):
    async def list(
        self, *, limit: int = 100, before_id: int | None = None, target_id: str | None = None
    ) -> list[AuditEvent]:
        data = (await self._json(_calls.audit(limit, before_id, target_id)))["data"]
        return [AuditEvent.model_validate(e) for e in data]

    async def iter(self, *, page_size: int = 100, target_id: str | None = None) -> AsyncIterator[AuditEvent]:
        before: int | None = None
        while True:
            page = await self.list(limit=page_size, before_id=before, target_id=target_id)
            for event in page:
                yield event
            if len(page) < page_size:
                return
            before = page[-1].id


class AsyncAdmin(AsyncAPIResource):
    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.tenants = AsyncTenants(client)
        self.keys = AsyncKeys(client)
        self.audit = AsyncAudit(client)

    async def usage(
        self,
        *,
        group_by: list[GroupBy] | None = None,
        start: datetime | date | None = None,
        end: datetime | date | None = None,
        tenant_id: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        served_model: str | None = None,
    ) -> UsageReport:
        call = _calls.usage(
            group_by,
            start,
            end,
            "json",
            tenant_id=tenant_id,
            key_id=key_id,
            model=model,
            served_model=served_model,
        )
        return UsageReport.model_validate(await self._json(call))

    async def status(self) -> dict[str, Any]:
        return dict(await self._json(Call("get", "/admin/status", admin=True)))


class AsyncHealth(AsyncAPIResource):
    async def upstreams(self) -> UpstreamHealth:
        return UpstreamHealth.model_validate(await self._json(Call("get", "/health/upstreams")))
