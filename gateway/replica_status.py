"""What `/admin/status` shows of this replica: Redis, the limiter, the ledger's queue and the key cache."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from redis.asyncio import Redis

from gateway.auth import KeyCache
from gateway.limits import RateLimiter
from gateway.store import UsageLedger


async def replica_status(
    redis: Redis, ledger: UsageLedger, cache: KeyCache, limiter: RateLimiter
) -> dict[str, Any]:
    """The shared state's health as this replica sees it (Redis unreachable is a field, not an error)."""
    try:
        redis_ok = bool(await redis.ping())
    except Exception:
        redis_ok = False
    return {
        "redis": {"reachable": redis_ok, "invalidations_live": cache.live},
        "limits": {"failure_mode": limiter.failure_mode, **asdict(limiter.stats)},
        "ledger": {
            "pending": ledger.pending,
            "written": ledger.written,
            "dropped": ledger.dropped,
            "failures": ledger.failures,
            "set_aside": ledger.set_aside,
        },
        "auth_cache": {
            "entries": len(cache),
            "unknown_keys_cached": cache.unknown,
            "hits": cache.hits,
            "misses": cache.misses,
        },
    }
