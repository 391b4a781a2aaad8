"""Each tenant's policy of one kind (moderation, PII redaction): the store's row, else the operator's
default; read at most once per `cache_s` per tenant on each replica (an admin change reaches the
other replicas within it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from gateway.store.records import AuditContext

P = TypeVar("P", bound=BaseModel)


class PolicyStore(Protocol):
    async def policy(self, tenant_id: str) -> dict[str, Any] | None: ...

    async def set_policy(
        self, tenant_id: str, policy: dict[str, Any] | None, *, at: datetime, audit: AuditContext
    ) -> None: ...


class TenantPolicies(Generic[P]):
    model: type[P]

    def __init__(self, store: PolicyStore, default: P, *, cache_s: float) -> None:
        self.store = store
        self.default = default
        self._cache_s = cache_s
        self._cached: dict[str, tuple[float, P]] = {}

    async def of(self, tenant_id: str | None) -> P:
        if tenant_id is None:
            return self.default
        now = time.monotonic()
        hit = self._cached.get(tenant_id)
        if hit is not None and now - hit[0] < self._cache_s:
            return hit[1]
        policy = await self.stored(tenant_id) or self.default
        self._cached[tenant_id] = (now, policy)
        return policy

    async def stored(self, tenant_id: str) -> P | None:
        stored = await self.store.policy(tenant_id)
        return self.model.model_validate(stored) if stored is not None else None

    async def set(self, tenant_id: str, policy: P | None, audit: AuditContext) -> None:
        body = policy.model_dump() if policy is not None else None
        await self.store.set_policy(tenant_id, body, at=datetime.now(UTC).replace(tzinfo=None), audit=audit)
        self._cached.pop(tenant_id, None)
