"""Who is calling: the key of any transport (an HTTP request, a WebSocket's handshake), with the
config file's limits over the store's, named in the request's logs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sqlalchemy.exc import SQLAlchemyError

from gateway.auth import Authenticator, Principal
from gateway.auth.keys import PREFIX
from gateway.errors import StoreUnavailable
from gateway.observability import RequestRecord, bind_request
from gateway.settings.policy import Allowance, Policy, PolicySource
from gateway.settings.sections import LimitsConfig


class Gate:
    def __init__(self, authenticator: Authenticator, policy: PolicySource | None = None) -> None:
        self._auth = authenticator
        self._policy = policy

    async def authenticate(
        self, headers: Mapping[str, str], address: str | None = None, allowance: Allowance | None = None
    ) -> Principal:
        """The caller (401 otherwise; 429 from an `address` that presented too many unknown keys);
        a store that cannot answer is a 503, not a 500."""
        if allowance is None:
            allowance = self._policy.current.auth_failures_per_address if self._policy else Allowance(0)
        try:
            return await self._auth.authenticate(headers, address=address, allowance=allowance)
        except (SQLAlchemyError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable("API keys cannot be checked right now; try again shortly.") from exc

    async def identify(
        self, headers: Mapping[str, str], record: RequestRecord | None, policy: Policy, address: str | None
    ) -> Principal:
        """The caller, named in the request's logs, with the config file's limits (those of
        `policy`, in force when the request arrived) over the store's."""
        principal = await self.authenticate(headers, address, policy.auth_failures_per_address)
        limits = policy.limits
        if record is not None:
            record.tenant, record.key_prefix = principal.tenant_id, key_prefix(headers)
            bind_request(tenant=record.tenant, key_prefix=record.key_prefix)
        if not limits.empty:
            principal = with_file_limits(principal, limits)
        return principal

    async def act_as(self, key_id: str | None, record: RequestRecord | None, policy: Policy) -> Principal:
        """The key `key_id` for a request the gateway makes on its behalf (a batch line): still
        live (401 once revoked, expired or its tenant disabled), with the config file's limits."""
        try:
            principal = await self._auth.principal_of(key_id)
        except (SQLAlchemyError, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable("API keys cannot be checked right now; try again shortly.") from exc
        if record is not None:
            record.tenant, record.key_prefix = principal.tenant_id, None
            bind_request(tenant=record.tenant)
        limits = policy.limits
        return principal if limits.empty else with_file_limits(principal, limits)


def key_prefix(headers: Mapping[str, str]) -> str | None:
    """Enough of the presented key to tell keys apart in logs (`sk-tantra-AbCd`), never more."""
    header = headers.get("authorization") or headers.get("api-key") or ""
    key = header.partition(" ")[2].strip() if " " in header else header.strip()
    if not key:
        return None
    if key.startswith(PREFIX) and len(key) > len(PREFIX) + 12:
        return key[: len(PREFIX) + 4]
    return key[: min(6, len(key) // 4)] or None  # a short key shows at most a quarter of itself


def with_file_limits(principal: Principal, limits: LimitsConfig) -> Principal:
    """The principal with the config file's limits applied over the store's."""
    return dataclasses.replace(
        principal,
        key_limits=limits.for_key(principal.key_id, principal.key_limits),
        tenant_limits=limits.for_tenant(principal.tenant_id, principal.tenant_limits),
    )
