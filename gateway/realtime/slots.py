"""How many realtime sessions may be open at once: on this replica, per key and per tenant.

A session is a long-lived connection that holds memory (its conversation, its audio buffer) and
can start model calls at any moment; without a cap one key could open thousands and exhaust the
replica. The caps are checked before the WebSocket handshake, so a refused client gets an ordinary
429 in OpenAI's envelope.

Two counts: this replica's, in memory (`SessionSlots`: the replica's cap, and the key's and tenant's
as a fallback when Redis is down and the limits fail open), and every replica's, in Redis
(`leased`): one of the key's session leases (`realtime_max_sessions_per_key`) and one concurrency
slot of its key and tenant, as a request in flight holds, so `max_concurrent` sees open sessions.
The leases are renewed while the session lasts and given back when it closes; a replica that dies
gives them back within `limits_lease_s`. The session's model calls run under its slot (the loopback
marks them) and are limited otherwise as HTTP requests by the same key.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from gateway.auth import Principal
from gateway.errors import RateLimited
from gateway.limits import RateLimiter


class TooManySessions(RateLimited):
    limit = "realtime_sessions"

    def __init__(self, message: str, *, scope: str) -> None:
        super().__init__(message, code="too_many_realtime_sessions", headers={"retry-after": "5"})
        self.scope = scope


@dataclass(frozen=True)
class SessionCaps:
    per_replica: int
    per_key: int


class SessionSlots:
    """The open sessions of this replica, counted as a whole, by key and by tenant."""

    def __init__(self) -> None:
        self._open = 0
        self._by: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return self._open

    @contextmanager
    def hold(self, principal: Principal, caps: SessionCaps) -> Iterator[None]:
        """A slot for the session's lifetime, or TooManySessions (nothing held) when a cap is full."""
        if self._open >= caps.per_replica:
            raise TooManySessions(
                "This gateway has as many realtime sessions open as it allows; try again shortly.",
                scope="replica",
            )
        owners = _owners(principal, caps)
        for owner, cap in owners:
            if self._by[owner] >= cap:
                scope = owner.split(":", 1)[0]
                raise TooManySessions(
                    f"This {scope} has {cap} realtime session(s) open, as many as it may; "
                    "close one before opening another.",
                    scope=scope,
                )
        self._open += 1
        self._by.update(owner for owner, _ in owners)
        try:
            yield
        finally:
            self._open -= 1
            for owner, _ in owners:
                self._by[owner] -= 1
                if self._by[owner] <= 0:
                    del self._by[owner]


@asynccontextmanager
async def leased(limiter: RateLimiter, principal: Principal, per_key: int) -> AsyncIterator[None]:
    """The session's leases in Redis for its lifetime, or RateLimited (the key's session cap, or its
    key's or tenant's concurrency, full on the replicas together). Redis down: the failure policy
    (`open`: nothing held, this replica's caps alone; `closed`: LimiterUnavailable, a 503)."""
    held = await limiter.hold_session(principal.scopes(), per_key)
    try:
        yield
    finally:
        # Shielded: a handler cancelled as its connection is torn down still frees the slots.
        await asyncio.shield(limiter.release(held))


def _owners(principal: Principal, caps: SessionCaps) -> list[tuple[str, int]]:
    """Each scope the session counts in, with its cap: the key's is the smaller of the realtime cap
    and the key's max_concurrent; the tenant's is its max_concurrent, when it has one."""
    owners: list[tuple[str, int]] = []
    if principal.key_id is not None:
        concurrent = principal.key_limits.max_concurrent
        owners.append((f"key:{principal.key_id}", min(caps.per_key, concurrent or caps.per_key)))
    if principal.tenant_id is not None and principal.tenant_limits.max_concurrent:
        owners.append((f"tenant:{principal.tenant_id}", principal.tenant_limits.max_concurrent))
    return owners
