"""The row numbers of a memory scope, kept in memory between searches (docs/memory.md).

A search is limited to the row numbers its scope admits; reading them from SQL took 13 ms p50 for a
user of 10k memories, on every chat with memory. Here they are kept per scope (with each row's
expiry, applied when read) under a version Redis keeps per (tenant, end user): every committed write
of the memory store bumps the versions of the users it touched and the tenant's `*` (what scopes
without a `user_id` read), so every replica sharing the Redis sees its cached rows go stale at once.
A search pays one Redis GET instead of the SQL read.

The version is read before the rows: a write committing in between leaves rows newer than their
version, never older, and the next search re-reads them. A write that could not bump its version
(Redis down) is covered by the entries' age limit; a read that cannot see Redis goes to SQL.
Rows removed by a GDPR erasure or by retention bypass the store's writes: a cached scope may still
name them, and they are then dropped where every hit is read back from SQL by its row number.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.store.memories import Scope
from gateway.store.owned import Owner

log = logging.getLogger("tantra.memory")

# Every row's expiry as seconds from this (naive UTC, as the store keeps times); never: +inf.
_EPOCH = datetime(1970, 1, 1)
_ANY_USER = "*"
_KEY = "tantra:memory:scope-version"

ScopeRows = Callable[[Owner, Scope], Awaitable[list[tuple[int, datetime | None]]]]


@dataclass
class _Entry:
    version: bytes | str | None
    seqs: np.ndarray  # int64
    expires: np.ndarray  # float64 seconds from _EPOCH, inf for none
    at: float  # monotonic time read


class ScopeCache:
    def __init__(
        self,
        redis: Redis,
        read: ScopeRows,
        *,
        max_rows: int = 1_000_000,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._read = read
        # At most this many row numbers kept across scopes (16 bytes each), least recent out first.
        self._max_rows = max_rows
        self._max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[tuple[str | None, ...], _Entry] = OrderedDict()
        self._rows = 0

    async def seqs(self, owner: Owner, scope: Scope, *, live_at: datetime | None) -> list[int]:
        """The row numbers of the owner's memories in `scope` (no metadata), unexpired at `live_at`
        (None: all)."""
        key = (owner.tenant_id, *scope.ids().values())
        try:
            version: bytes | str | None = await self._redis.get(_version_key(owner.tenant_id, scope.user_id))
        except RedisError as exc:
            log.warning("memory scope cache: no version (%s), read from SQL", exc)
            return _live(_entry(await self._read(owner, scope), None, 0.0), live_at)
        entry = self._entries.get(key)
        now = self._clock()
        if entry is None or entry.version != version or now - entry.at > self._max_age_s:
            entry = _entry(await self._read(owner, scope), version, now)
            self._keep(key, entry)
        else:
            self._entries.move_to_end(key)
        return _live(entry, live_at)

    async def written(self, tenant_id: str | None, users: set[str | None]) -> None:
        """A committed write changed these end users' memories: their scopes' versions move."""
        keys = {_version_key(tenant_id, None), *(_version_key(tenant_id, u) for u in users if u)}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in sorted(keys):
                    pipe.incr(name)
                await pipe.execute()
        except RedisError as exc:
            log.warning("memory scope cache: versions not bumped (%s)", exc)
            self.clear()  # this replica at least; others within max_age_s

    def clear(self) -> None:
        self._entries.clear()
        self._rows = 0

    def _keep(self, key: tuple[str | None, ...], entry: _Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._rows -= len(old.seqs)
        if len(entry.seqs) > self._max_rows:
            return
        self._entries[key] = entry
        self._rows += len(entry.seqs)
        while self._rows > self._max_rows:
            _, dropped = self._entries.popitem(last=False)
            self._rows -= len(dropped.seqs)


def _version_key(tenant_id: str | None, user_id: str | None) -> str:
    return f"{_KEY}:{tenant_id or ''}:{user_id or _ANY_USER}"


def _entry(rows: list[tuple[int, datetime | None]], version: bytes | str | None, at: float) -> _Entry:
    seqs = np.fromiter((seq for seq, _ in rows), dtype=np.int64, count=len(rows))
    expires = np.fromiter(
        (np.inf if e is None else (e - _EPOCH).total_seconds() for _, e in rows),
        dtype=np.float64,
        count=len(rows),
    )
    return _Entry(version, seqs, expires, at)


def _live(entry: _Entry, live_at: datetime | None) -> list[int]:
    if live_at is None:
        return entry.seqs.tolist()
    return entry.seqs[entry.expires > (live_at - _EPOCH).total_seconds()].tolist()
