"""The heartbeat of concurrency leases: a request holds its slot for `lease_s` at a time, renewed every
third of that while it runs, so a replica that dies (no settlement ever comes) gives its slots back
within `lease_s`, while a request that runs for an hour keeps its own.

One task per limiter renews every live lease, and ends when none is left (the next admission starts
it again). A renewal Redis refuses is tried again at the next beat; two missed beats in a row lose
the slot, which counts for the key again only when the request settles.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.limits.scripts import Scripts

# The ASGI scope entry a realtime session's own in-process requests carry (gateway/realtime/loopback.py
# sets it; no client can: a scope is built by the server, never from a header). Such a request runs
# under the session's concurrency slot, so admission takes no second one for it.
SESSION_SLOT = "tantra.under_session_slot"

# How many times a lease is renewed within its own length: a beat may be missed without losing it.
BEATS_PER_LEASE = 3


class Heartbeat:
    """Renews the concurrency leases of the requests still running on this replica."""

    def __init__(self, scripts: Scripts, lease_s: float) -> None:
        self._scripts = scripts
        self._interval = lease_s / BEATS_PER_LEASE
        self._live: dict[str, tuple[str, ...]] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, member: str, leases: tuple[str, ...]) -> None:
        """`member` holds `leases` (its concurrency keys) until `release`."""
        if not leases:
            return
        self._live[member] = leases
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._beat())

    def release(self, member: str) -> None:
        self._live.pop(member, None)

    @property
    def live(self) -> int:
        return len(self._live)

    async def _beat(self) -> None:
        while self._live:
            await asyncio.sleep(self._interval)
            for member, leases in list(self._live.items()):
                if member not in self._live:
                    continue
                with contextlib.suppress(Exception):  # the next beat tries again
                    await self._scripts.renew(member, leases)

    async def stop(self) -> None:
        """Stop renewing (at shutdown: whatever is still held expires with its lease)."""
        self._live.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
