"""Who is calling: a key, its tenant, and what both allow."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.limits import Scope
from gateway.store import Limits


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None
    key_id: str | None
    key_limits: Limits
    tenant_limits: Limits

    @property
    def anonymous(self) -> bool:
        return self.key_id is None

    def may_use(self, model: str) -> bool:
        return all(
            limits.allowed_models is None or model in limits.allowed_models
            for limits in (self.key_limits, self.tenant_limits)
        )

    def memory_on(self, default: bool) -> bool:
        """Memory in chat for this caller: the key's setting, else its tenant's, else `default`."""
        for setting in (self.key_limits.memory, self.tenant_limits.memory):
            if setting is not None:
                return setting
        return default

    def scopes(self) -> list[Scope]:
        scopes = []
        if self.key_id is not None:
            scopes.append(Scope("key", self.key_id, self.key_limits))
        if self.tenant_id is not None:
            scopes.append(Scope("tenant", self.tenant_id, self.tenant_limits))
        return scopes


ANONYMOUS = Principal(tenant_id=None, key_id=None, key_limits=Limits(), tenant_limits=Limits())
