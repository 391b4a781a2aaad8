"""Throttling of guessed keys: unknown keys presented from one client address are counted in Redis
(shared by every replica); past the allowance, keys this replica has not cached get 429 without a
database lookup until the window ends. Keys already in the cache still work from that address, and
so do keys whose entry has outlived its TTL while invalidations arrive (none changed them): one
client guessing behind a shared address (a NAT, a proxy) does not lock out the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from gateway.limits.rejections import blocked
from gateway.limits.strikes import Strikes
from gateway.settings.policy import Allowance


@dataclass
class AuthFailureStats:
    """Counters a metrics exporter can read."""

    unknown_keys: int = 0  # 401s for keys the store does not know
    throttled: int = 0  # 429s instead of a lookup


class AuthFailures:
    def __init__(self, strikes: Strikes, on_event: Callable[[str], None] | None = None) -> None:
        self._strikes = strikes
        self.stats = AuthFailureStats()
        # Told `unknown_key` or `throttled` (the metrics' tantra_auth_failures_total{outcome}).
        self._on_event = on_event or (lambda outcome: None)

    def blocked(self, address: str | None, allowance: Allowance) -> bool:
        """Whether `address` presented too many unknown keys (memory only: no round trip)."""
        return address is not None and allowance.count > 0 and self._strikes.blocked_for(address) > 0

    def refuse(self, address: str) -> NoReturn:
        """The 429 for a blocked `address`, instead of a lookup."""
        seconds = self._strikes.blocked_for(address)
        self.stats.throttled += 1
        self._on_event("throttled")
        raise blocked(
            f"Too many requests with invalid API keys from this address; retry after {seconds:.0f} seconds.",
            code="too_many_auth_failures",
            seconds=seconds,
            limit="auth_failures",
            scope="address",
        )

    async def failed(self, address: str | None, allowance: Allowance) -> None:
        """Count one unknown key presented from `address`."""
        self.stats.unknown_keys += 1
        self._on_event("unknown_key")
        if address is not None:
            await self._strikes.strike(address, allowance)
