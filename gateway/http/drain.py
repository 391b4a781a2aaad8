"""Graceful shutdown: on SIGTERM the gateway stops taking work, lets in-flight requests finish
within a grace period, and only then lets the server exit.

While draining, /readyz answers 503 (so a load balancer takes the replica out) and new API
requests get 503 `shutting_down` with `Retry-After` and `Connection: close`, instead of a refused
connection; streams already running carry on to their end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ShuttingDown, error_for

_log = logging.getLogger("tantra.gateway")

# Paths that carry work; operators' routes (/readyz, /metrics, /health/...) still answer while draining.
_WORK_PREFIXES = ("/v1/", "/admin/")


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def begin(self, grace_s: float, then: Callable[[], None]) -> None:
        """Start draining (idempotent); `then` runs once nothing is in flight, or at the grace's end."""
        if self.draining:
            return
        self.draining = True
        _log.warning("draining: %d requests in flight, up to %gs to finish", self.in_flight, grace_s)
        self._task = asyncio.get_running_loop().create_task(self._wait(grace_s, then), name="tantra-drain")

    async def _wait(self, grace_s: float, then: Callable[[], None]) -> None:
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=grace_s)
        if self.in_flight:
            _log.warning("grace period over with %d requests still in flight", self.in_flight)
        then()


class DrainMiddleware:
    """Counts the requests doing work, and refuses new ones once draining (pure ASGI: no buffering)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_WORK_PREFIXES):
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await error_for(scope["path"], ShuttingDown())(scope, receive, send)
            return
        self.drain.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.leave()
