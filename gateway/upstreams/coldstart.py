"""Scale to zero's first request: held until discovery finds an engine for its model, within a bound.

With engines autoscaled down to none (KEDA's `minReplicas: 0`, docs/deploy.md, "Scale to zero"), a
discovered upstream has no member, and a request would get 503 with Retry-After at once. With
`cold_start_wait_s` above 0 the request waits instead, up to that long, for the pool to gain a
member serving its model (the headless Service publishes a pod only once it is ready), then goes on
as any other. While it waits it counts in `tantra_requests_waiting{model}`: the gauge KEDA's
activation trigger reads to bring the first engine up. Past the wait, the usual 503 + Retry-After.

Only a pool with discovered upstreams holds: members of fixed upstreams come back through a reload,
not by waiting.
"""

from __future__ import annotations

import asyncio
import time

from gateway.observability.metrics import GatewayMetrics
from gateway.upstreams.pool import UpstreamPool


class ColdStart:
    """`await cold_start.hold(model)` returns when the model has a member, or the wait is over."""

    def __init__(self, pool: UpstreamPool, wait_s: float, metrics: GatewayMetrics | None = None) -> None:
        self._pool = pool
        self._wait_s = wait_s
        self._metrics = metrics
        self._changed = asyncio.Event()
        pool.on_reconfigure(self._wake)

    def _wake(self) -> None:
        """The pool's members changed: every waiter looks again, and the next change wakes anew."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _served(self, model: str | None) -> bool:
        members = self._pool.members_for(model) if model is not None else list(self._pool.members.values())
        return any(not member.draining for member in members)

    async def hold(self, model: str | None) -> None:
        """Wait (bounded) while a discovered pool has no member for `model` (None: any model)."""
        if self._wait_s <= 0 or self._served(model) or not self._pool.discovered():
            return
        label = model or ""
        if self._metrics is not None:
            self._metrics.requests_waiting.labels(label).inc()
        try:
            deadline = time.monotonic() + self._wait_s
            while not self._served(model):
                left = deadline - time.monotonic()
                if left <= 0:
                    return  # the caller's own path answers 503 with Retry-After
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    return
        finally:
            if self._metrics is not None:
                self._metrics.requests_waiting.labels(label).dec()
