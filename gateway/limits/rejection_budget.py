"""The rejection budget: refused requests count against their key and their client address, so
that a client sending requests the gateway refuses anyway (bad bodies, unknown models, requests
over its limits) is throttled to a cheap 429 before its next body is even read.

A refusal costs the gateway what came before it (reading, parsing, validating, a Redis round trip
for the limits) and the 429 of a limit counts against no limit itself. Counted: the statuses of
`COUNTED`; 401s are counted apart, per address (gateway/auth/failures.py).
"""

from __future__ import annotations

from gateway.limits.rejections import blocked
from gateway.limits.strikes import Strikes
from gateway.settings.policy import Allowance

COUNTED = frozenset({400, 403, 404, 413, 429})


class RejectionBudget:
    """Per key and per client address, in Redis shared by every replica."""

    def __init__(self, by_key: Strikes, by_address: Strikes) -> None:
        self._by_key = by_key
        self._by_address = by_address

    def check_address(self, address: str | None, allowance: Allowance) -> None:
        """429 if the address spent its budget (memory only: no round trip)."""
        if address is not None and allowance.count > 0:
            _refuse_if_blocked(self._by_address.blocked_for(address), "address")

    def check_key(self, key_id: str | None, allowance: Allowance) -> None:
        """429 if the key spent its budget (memory only: no round trip)."""
        if key_id is not None and allowance.count > 0:
            _refuse_if_blocked(self._by_key.blocked_for(key_id), "key")

    async def count(
        self,
        status: int,
        *,
        key_id: str | None,
        address: str | None,
        per_key: Allowance,
        per_address: Allowance,
    ) -> None:
        """Count one refusal with `status` (others are not counted)."""
        if status not in COUNTED:
            return
        if key_id is not None:
            await self._by_key.strike(key_id, per_key)
        if address is not None:
            await self._by_address.strike(address, per_address)


def _refuse_if_blocked(seconds: float, scope: str) -> None:
    if seconds <= 0:
        return
    subject = "API key" if scope == "key" else "client address"
    raise blocked(
        f"Too many refused requests from this {subject}; check the requests' errors, then retry "
        f"after {seconds:.0f} seconds.",
        code="too_many_rejections",
        seconds=seconds,
        limit="rejections",
        scope=scope,
    )
