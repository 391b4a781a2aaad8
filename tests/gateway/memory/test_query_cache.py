"""The search queries' vector cache (gateway/memory/query_cache.py): least recently used out first,
no entry older than its TTL, and a tenant's entries dropped at once (GDPR erasure)."""

from __future__ import annotations

import numpy as np

from gateway.memory.query_cache import QueryCache


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _vector(n: float) -> np.ndarray:
    return np.full(4, n, dtype=np.float32)


def test_least_recently_used_out_first_and_none_past_the_ttl() -> None:
    clock = _Clock()
    cache = QueryCache(max_entries=2, ttl_s=300, clock=clock)
    cache.put(("t1", "m", "a"), _vector(1))
    cache.put(("t1", "m", "b"), _vector(2))
    assert cache.get(("t1", "m", "a")) is not None  # now the most recent
    cache.put(("t1", "m", "c"), _vector(3))
    assert cache.get(("t1", "m", "b")) is None and len(cache) == 2
    clock.now = 301
    assert cache.get(("t1", "m", "a")) is None and cache.get(("t1", "m", "c")) is None
    assert len(cache) == 0
    off = QueryCache(max_entries=0)
    off.put(("t1", "m", "a"), _vector(1))
    assert off.get(("t1", "m", "a")) is None


def test_forget_drops_only_the_tenants_entries() -> None:
    cache = QueryCache()
    for tenant in ("t1", "t2"):
        for text in ("where do I live?", "my name"):
            cache.put((tenant, "m", text), _vector(1))
    assert cache.forget("t1") == 2
    assert cache.get(("t1", "m", "my name")) is None
    assert cache.get(("t2", "m", "my name")) is not None
