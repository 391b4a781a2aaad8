"""The gateway's network clients, built from the settings: the engine pool, the health probes' own,
Redis (and the rate limiter on it), media fetches."""

from __future__ import annotations

from datetime import datetime

import httpx
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.limits import RateLimiter
from gateway.limits.limiter import ScopeKind
from gateway.settings.schema import Settings
from gateway.store import Store
from gateway.upstreams.transport import EngineTransport


def engine_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for all engine traffic; its read timeout bounds the wait for each next chunk."""
    return _engine_pool(settings, settings.max_connections, settings.request_timeout_s)


def probe_client(settings: Settings) -> httpx.AsyncClient:
    """The health probes' own client: the deep checks and the breakers' /health probes.

    On the engine client they queued behind the streams once `max_connections` of them were open,
    so a probe found no connection within its timeout and readiness turned red under load while
    the engines were fine (docs/performance.md). Its pool needs no cap of its own: the probes bound
    it, one deep check and one breaker probe per upstream at a time, one connection each.
    """
    return _engine_pool(settings, None, settings.health_timeout_s)


def _engine_pool(settings: Settings, max_connections: int | None, read_timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(read_timeout_s, connect=settings.connect_timeout_s)
    if settings.engine_transport == "aiohttp":
        # The default: far cheaper per request at high concurrency (docs/performance.md), and its
        # connect timeout survives a stalled event loop (docs/resilience.md).
        return httpx.AsyncClient(timeout=timeout, transport=EngineTransport(limits=limits), trust_env=False)
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)


IN_PROCESS_REDIS = "memory://"


def redis_clients(settings: Settings) -> tuple[Redis, Redis]:
    """The request path's client and the key-invalidation subscriber's.

    `TANTRA_REDIS_URL=memory://` keeps the limits in this process, for a single replica without a
    Redis server: fakeredis runs the limiter's own Lua scripts (through lupa), so the limits behave
    exactly as with Redis, only not shared with other replicas.
    """
    if settings.redis_url == IN_PROCESS_REDIS:
        from fakeredis import FakeAsyncRedis, FakeServer

        server = FakeServer()
        return FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)
    # The subscriber waits on its connection for as long as nothing is published: no read timeout.
    return redis_client(settings), redis_client(settings, read_timeout_s=None)


def media_fetch_client(settings: Settings) -> httpx.AsyncClient:
    """Media URLs are fetched with their own client: the engine pool's timeouts and limits are not theirs."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.media_fetch_timeout_s),
        limits=httpx.Limits(max_connections=32),
        trust_env=False,
    )


def redis_client(settings: Settings, *, read_timeout_s: float | None = -1.0) -> Redis:
    """Short timeouts and no retries: on the request path a slow Redis falls to the failure policy
    at once instead of stalling requests; the limiter itself decides when to try again. Past
    `max_connections` busy connections a command waits (up to the timeout) for one to come free."""
    timeout = settings.redis_timeout_s if read_timeout_s == -1.0 else read_timeout_s
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=timeout,
        # Opening connections under a burst takes longer than a command; a dead Redis refuses at once.
        socket_connect_timeout=max(1.0, settings.redis_timeout_s),
    )
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


def rate_limiter(settings: Settings, redis: Redis, store: Store) -> RateLimiter:
    """The limiter on Redis; a budget Redis has lost is seeded from the ledger."""

    async def seed(kind: ScopeKind, scope_id: str, since: datetime) -> tuple[int, int]:
        if kind == "key":
            return await store.usage_since(key_id=scope_id, since=since)
        return await store.usage_since(tenant_id=scope_id, since=since)

    return RateLimiter(
        redis,
        window_s=settings.limits_window_s,
        lease_s=settings.limits_lease_s,
        failure_mode=settings.limits_failure_mode,
        seed=seed,
    )
