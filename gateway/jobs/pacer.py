"""How background work shares a replica with interactive traffic.

A job's handler takes a `turn` before each unit of engine work (a batch's line): at most `slots`
turns are out at once across all the replica's jobs, and while the replica's interactive requests
in flight are at `yield_at` or more, a new turn waits. Batches so fill idle capacity and never
queue ahead of interactive requests at this replica; on the engine, they also ask for vLLM's
lower `priority` (the batch handler's part).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class Pacer:
    """`in_flight` counts the requests the replica is serving, the background turns' own included
    when they pass through the app (as a batch's loopback requests do); the pacer subtracts its own
    turns to see the interactive ones."""

    def __init__(
        self,
        slots: int,
        *,
        in_flight: Callable[[], int] = lambda: 0,
        yield_at: int = 0,
        poll_s: float = 0.05,
    ) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._in_flight = in_flight
        self.yield_at = yield_at
        self._poll_s = poll_s
        self.active = 0
        self.waited = 0

    def interactive(self) -> int:
        return max(0, self._in_flight() - self.active)

    def busy(self) -> bool:
        return self.yield_at > 0 and self.interactive() >= self.yield_at

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._slots:
            if self.busy():
                self.waited += 1
                # Polled: the in-flight count is the drain's plain counter, with no event to wait on.
                while self.busy():  # noqa: ASYNC110
                    await asyncio.sleep(self._poll_s)
            self.active += 1
            try:
                yield
            finally:
                self.active -= 1
