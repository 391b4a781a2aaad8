"""How many realtime sessions may be open at once: on this replica, per key and per tenant.

A session is a long-lived connection that holds memory (its conversation, its audio buffer) and
can start model calls at any moment; without a cap one key could open thousands and exhaust the
replica. The caps are checked before the WebSocket handshake, so a refused client gets an ordinary
429 in OpenAI's envelope. A session counts against its key's and tenant's `max_concurrent` (it is a
request that stays in flight), in this replica's count; its model calls are limited as HTTP requests
by the same key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gateway.auth import Principal
from gateway.errors import RateLimited


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
