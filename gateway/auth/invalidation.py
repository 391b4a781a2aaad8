"""Key and tenant changes told to every replica at once, over Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth.cache import KeyCache

_log = logging.getLogger("tantra.auth")

CHANNEL = "tantra:auth:invalidate"


class InvalidationBus:
    """Publishes `key:<id>`, `tenant:<id>` or `all`, and applies what any replica published.

    While subscribed the cache trusts entries for its full TTL; when the subscription breaks (Redis
    down) the cache falls back to its short degraded TTL, and on resubscribing it is cleared, since
    messages sent meanwhile were lost.
    """

    def __init__(self, redis: Redis, cache: KeyCache) -> None:
        # A connection of its own without a read timeout: a subscriber waits for messages.
        self._redis = redis
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="auth-invalidation")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, *, key_id: str | None = None, tenant_id: str | None = None) -> None:
        """Apply here at once, then tell the other replicas; a failure is logged, not raised (their
        caches then expire within the degraded TTL, as Redis being down also cuts them off)."""
        message = f"key:{key_id}" if key_id is not None else f"tenant:{tenant_id}" if tenant_id else "all"
        self._apply(message)
        try:
            await self._redis.publish(CHANNEL, message)
        except (RedisError, OSError) as exc:
            _log.warning("could not publish %s to other replicas: %s", message, exc)

    def _apply(self, message: str) -> None:
        kind, _, ident = message.partition(":")
        if kind == "key":
            self._cache.invalidate(key_id=ident)
        elif kind == "tenant":
            self._cache.invalidate(tenant_id=ident)
        else:
            self._cache.clear()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._cache.clear()
                self._cache.live = True
                self.subscribed.set()
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        self._apply(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._cache.live:
                    _log.error("auth invalidations interrupted (%s); cached keys now expire in seconds", exc)
                self._cache.live = False
                self._cache.clear()  # entries trusted for the long TTL would miss revocations now
                self.subscribed.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                self._cache.live = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
