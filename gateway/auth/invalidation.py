"""Key and tenant changes told to every replica at once, over Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from gateway.auth.cache import KeyCache
from gateway.background import cancelled

_log = logging.getLogger("tantra.auth")

CHANNEL = "tantra:auth:invalidate"


class _Silent(Exception):
    """The subscription stopped answering PING: a half-open connection, presumed dead."""


class InvalidationBus:
    """Publishes `key:<id>`, `tenant:<id>` or `all`, and applies what any replica published.

    A subscription is only as good as its last answered PING: a half-open connection (Redis gone
    without a FIN, a stalled proxy) delivers nothing and raises nothing. So the subscriber PINGs four
    times per degraded TTL and tells the cache which PING was answered last (`KeyCache.confirm`);
    the cache trusts entries past the degraded TTL only while those answers keep coming. After
    `_dead_s` without an answer the connection is replaced; on (re)subscribing the cache is cleared
    at the first answer, since messages sent meanwhile were lost.
    """

    def __init__(self, redis: Redis, cache: KeyCache) -> None:
        # A connection of its own without a read timeout: a subscriber waits for messages.
        self._redis = redis
        self._cache = cache
        self._ping_s = max(0.02, cache.degraded_ttl_s / 4)
        self._dead_s = max(3.0, 3 * cache.degraded_ttl_s)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set once the subscription has answered a PING

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="auth-invalidation")

    async def close(self) -> None:
        await cancelled(self._task)
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
                await self._follow(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.subscribed.is_set():
                    _log.error("auth invalidations interrupted (%s); cached keys now expire in seconds", exc)
                    delay = 0.1
                self._cache.distrust()
                self._cache.clear()  # entries trusted for the long TTL would miss revocations now
                self.subscribed.clear()
            finally:
                self._cache.distrust()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _follow(self, pubsub: PubSub) -> None:
        """One subscription: apply what it delivers and PING it, until it fails or falls silent."""
        await pubsub.subscribe(CHANNEL)
        answered = next_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if now - answered > self._dead_s:
                raise _Silent(f"no answer to PING for {now - answered:.1f} s")
            if now >= next_ping:
                async with asyncio.timeout(self._dead_s):  # a write into a full socket buffer
                    await pubsub.ping(repr(now))
                next_ping = now + self._ping_s
            message = await pubsub.get_message(timeout=max(0.0, next_ping - time.monotonic()))
            if message is None:
                continue
            data = message["data"]
            text = data.decode() if isinstance(data, bytes) else str(data)
            if message["type"] == "message":
                self._apply(text)
            elif message["type"] == "pong":
                self._answered(text)
                answered = time.monotonic()

    def _answered(self, token: str) -> None:
        try:
            sent_at = float(token)
        except ValueError:
            return
        if not self.subscribed.is_set():
            # SUBSCRIBE took effect before this PING: from here on every message arrives, but one
            # published before may have been missed, and with it an entry looked up meanwhile.
            self._cache.clear()
            self.subscribed.set()
        self._cache.confirm(sent_at)
