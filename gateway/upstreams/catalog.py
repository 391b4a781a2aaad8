"""The models the engine serves, cached so that the hot path never waits on /v1/models."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import ModelNotFound

_MIN_REFRESH_S = 0.5


class ModelCatalog:
    """Answers "which model is this?" from memory, refreshing from the engine behind the scenes.

    A known model is served from the cache even when it is stale (the refresh runs
    in the background); an unknown one forces a refresh first, so a model the engine
    has just started serving is found at once.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[list[dict[str, Any]]]],
        ttl_s: float,
        hold: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> None:
        self._fetch = fetch
        # Scale to zero: an unknown model waits (bounded) for an engine before it is looked up again.
        self._hold = hold
        self._ttl_s = ttl_s
        self._cards: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def list(self) -> list[dict[str, Any]]:
        await self._refresh_if_stale(wait=not self._cards)
        return list(self._cards.values())

    async def resolve(self, name: str | None) -> dict[str, Any]:
        """The model card for `name` (the engine's first model when None), or ModelNotFound."""
        card = self._lookup(name)
        if card is None:
            if self._hold is not None:
                await self._hold(name)
            # Bounded, so that a client asking for a wrong name cannot flood the engine.
            if time.monotonic() - self._fetched_at >= _MIN_REFRESH_S or not self._cards:
                await self.refresh()
            card = self._lookup(name)
            if card is None:
                raise ModelNotFound(
                    f"The model `{name}` does not exist or you do not have access to it.", param="model"
                )
        else:
            await self._refresh_if_stale(wait=False)
        return card

    async def refresh(self) -> None:
        """Ask the upstreams for their models; raises EngineUnavailable when none can be reached."""
        async with self._lock:
            cards = await self._fetch()
            self._cards = {card["id"]: card for card in cards}
            self._fetched_at = time.monotonic()

    def _lookup(self, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return next(iter(self._cards.values()), None)
        return self._cards.get(name)

    async def _refresh_if_stale(self, *, wait: bool) -> None:
        if time.monotonic() - self._fetched_at < self._ttl_s:
            return
        if wait:
            await self.refresh()
        elif self._background is None or self._background.done():
            self._background = asyncio.create_task(self._quiet_refresh())

    async def _quiet_refresh(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a failed background refresh keeps the old list; requests report the outage
            self._fetched_at = time.monotonic()
