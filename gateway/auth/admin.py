"""Managing tenants and keys: each change stored with its audit entry, then told to every replica."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway.auth.invalidation import InvalidationBus
from gateway.auth.keys import generate_key, hash_key, redact
from gateway.errors import Conflict, NotFound
from gateway.store import AlreadyExists, AuditContext, Limits, NotFoundInStore, Store
from gateway.store.models import ApiKey, Tenant


class KeyAdmin:
    def __init__(self, store: Store, bus: InvalidationBus | None) -> None:
        self._store = store
        self._bus = bus

    async def create_tenant(
        self, name: str, limits: Limits, *, disabled: bool = False, audit: AuditContext
    ) -> Tenant:
        with _as_api_errors():
            return await self._store.create_tenant(name, limits, disabled=disabled, audit=audit)

    async def get_tenant(self, tenant_id: str) -> Tenant:
        with _as_api_errors():
            return await self._store.get_tenant(tenant_id)

    async def update_tenant(self, tenant_id: str, changes: dict[str, Any], *, audit: AuditContext) -> Tenant:
        with _as_api_errors():
            tenant = await self._store.update_tenant(tenant_id, changes, audit=audit)
        await self._tell(tenant_id=tenant_id)
        return tenant

    async def create_key(
        self,
        tenant_id: str,
        *,
        name: str,
        limits: Limits,
        expires_at: datetime | None,
        audit: AuditContext,
    ) -> tuple[ApiKey, str]:
        """The new key and its secret, which is never shown again."""
        secret = generate_key()
        with _as_api_errors():
            key = await self._store.create_key(
                tenant_id,
                name=name,
                key_hash=hash_key(secret),
                redacted=redact(secret),
                limits=limits,
                expires_at=expires_at,
                audit=audit,
            )
        return key, secret

    async def get_key(self, key_id: str) -> ApiKey:
        with _as_api_errors():
            return await self._store.get_key(key_id)

    async def update_key(self, key_id: str, changes: dict[str, Any], *, audit: AuditContext) -> ApiKey:
        with _as_api_errors():
            key = await self._store.update_key(key_id, changes, audit=audit)
        await self._tell(key_id=key_id)
        return key

    async def rotate_key(self, key_id: str, *, grace: timedelta, audit: AuditContext) -> tuple[ApiKey, str]:
        """A new secret for the same key (same id, limits and ledger); the old one stops at once or
        after `grace`."""
        secret = generate_key()
        with _as_api_errors():
            key, _ = await self._store.rotate_key(
                key_id, key_hash=hash_key(secret), redacted=redact(secret), grace=grace, audit=audit
            )
        await self._tell(key_id=key_id)
        return key, secret

    async def revoke_key(self, key_id: str, *, audit: AuditContext) -> ApiKey:
        with _as_api_errors():
            key = await self._store.revoke_key(key_id, audit=audit)
        await self._tell(key_id=key_id)
        return key

    async def forget_tenant(self, tenant_id: str) -> None:
        """Every replica drops the tenant's keys from its cache (a GDPR erasure revoked them)."""
        await self._tell(tenant_id=tenant_id)

    async def _tell(self, *, key_id: str | None = None, tenant_id: str | None = None) -> None:
        if self._bus is not None:
            await self._bus.publish(key_id=key_id, tenant_id=tenant_id)


class _as_api_errors:
    """The store's lookups and conflicts, as the 404 and 409 a client should see."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, NotFoundInStore):
            raise NotFound(str(exc)) from None
        if isinstance(exc, AlreadyExists):
            raise Conflict(str(exc)) from None
