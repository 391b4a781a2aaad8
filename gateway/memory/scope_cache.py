"""The row numbers of a memory scope, kept in memory between searches (docs/memory.md).

A search is limited to the row numbers its scope admits; reading them from SQL took 13 ms p50 for a
user of 10k memories, on every chat with memory. Here they are kept per scope (with each row's
expiry, applied when read) under a version Redis keeps per (tenant, end user): every committed write
of the memory store bumps the versions of the users it touched and the tenant's `*` (what scopes
without a `user_id` read), so every replica sharing the Redis sees its cached rows go stale at once.
A search pays one Redis GET instead of the SQL read, and gets the same read-only numpy array of
row numbers as the last search of the scope while neither its version nor its live rows changed (a
row expiring in between makes a new one): the FAISS index keeps its scope selector by that array
(gateway/memory/faiss_index.py), so an unchanged scope's selector is not rebuilt per search.

An entry also keeps the rows of the hits its searches read (`rows`, `keep_rows`: at most
`ROWS_PER_SCOPE`), so a search whose hits were returned before reads no SQL at all: they are valid
exactly as long as the entry's version, and rows read from SQL are kept only in the entry whose
row numbers the search used (a newer version's entry never takes rows read before its write).

The version is read before the rows: a write committing in between leaves rows newer than their
version, never older, and the next search re-reads them. A write that could not bump its version
(Redis down) is covered by the entries' age limit; a read that cannot see Redis goes to SQL.
Rows removed by a GDPR erasure or by retention bypass the store's writes: those bump the tenant's
own version (`erased`), which every scope of the tenant reads beside its user's (one MGET), and
remove the rows from the vector index, so a hit is never one of them even on a replica that missed
the bump (the shared backends delete at once; FAISS is one replica's).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.store.memories import Memory, Scope
from gateway.store.owned import Owner

log = logging.getLogger("tantra.memory")

# Every row's expiry as seconds from this (naive UTC, as the store keeps times); never: +inf.
_EPOCH = datetime(1970, 1, 1)
_ANY_USER = "*"
_KEY = "tantra:memory:scope-version"
# The tenant's own version: moved by erasures and retention, read by every scope of the tenant.
_TENANT_KEY = "tantra:memory:tenant-version"
# Hits' rows kept per scope at most (each with its vector: about 1-2 KB).
ROWS_PER_SCOPE = 1_000

ScopeRows = Callable[[Owner, Scope], Awaitable[list[tuple[int, datetime | None]]]]


@dataclass
class _Entry:
    version: object
    seqs: np.ndarray  # int64, read-only
    expires: np.ndarray  # float64 seconds from _EPOCH, inf for none
    at: float  # monotonic time read
    # The live rows last computed, and the span of times (seconds from _EPOCH) they hold for: from
    # the latest expiry among the rows they leave out to the earliest among the rows they keep.
    live: np.ndarray | None = None
    live_from: float = np.inf
    live_until: float = -np.inf
    # Hits' rows read while this entry was the scope's, by row number.
    rows: dict[int, Memory] = field(default_factory=dict)


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

    async def seqs(self, owner: Owner, scope: Scope, *, live_at: datetime | None) -> np.ndarray:
        """The row numbers of the owner's memories in `scope` (no metadata), unexpired at `live_at`
        (None: all), as a read-only int64 array: the same object while they are unchanged."""
        key = (owner.tenant_id, *scope.ids().values())
        names = (_version_key(owner.tenant_id, scope.user_id), _tenant_key(owner.tenant_id))
        try:
            version = tuple(await self._redis.mget(names))
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

    def rows(self, owner: Owner, scope: Scope, among: np.ndarray, seqs: list[int]) -> dict[int, Memory]:
        """The kept rows of `seqs`, hits of a search of `scope` limited to `among` (what `seqs`
        returned for it): none unless `among` is still the scope's entry's."""
        entry = self._entry_of(owner, scope, among)
        if entry is None:
            return {}
        return {seq: entry.rows[seq] for seq in seqs if seq in entry.rows}

    def keep_rows(self, owner: Owner, scope: Scope, among: np.ndarray, rows: dict[int, Memory]) -> None:
        """Keep the hits' rows read from SQL in the entry `among` came from, if it is still the
        scope's (a newer version's entry is left alone: these rows may predate its write)."""
        entry = self._entry_of(owner, scope, among)
        if entry is None:
            return
        if len(entry.rows) + len(rows) > ROWS_PER_SCOPE:
            entry.rows.clear()
        entry.rows.update(rows)

    def _entry_of(self, owner: Owner, scope: Scope, among: np.ndarray) -> _Entry | None:
        entry = self._entries.get((owner.tenant_id, *scope.ids().values()))
        if entry is None or not (among is entry.live or among is entry.seqs):
            return None
        return entry

    async def erased(self, tenant_id: str | None) -> None:
        """Rows of the tenant were removed outside the store's writes (a GDPR erasure, retention):
        every scope of the tenant is read again, on every replica."""
        await self._bump({_tenant_key(tenant_id)})

    async def written(self, tenant_id: str | None, users: set[str | None]) -> None:
        """A committed write changed these end users' memories: their scopes' versions move."""
        await self._bump({_version_key(tenant_id, None), *(_version_key(tenant_id, u) for u in users if u)})

    async def _bump(self, keys: set[str]) -> None:
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


def _tenant_key(tenant_id: str | None) -> str:
    return f"{_TENANT_KEY}:{tenant_id or ''}"


def _entry(rows: list[tuple[int, datetime | None]], version: object, at: float) -> _Entry:
    seqs = np.fromiter((seq for seq, _ in rows), dtype=np.int64, count=len(rows))
    expires = np.fromiter(
        (np.inf if e is None else (e - _EPOCH).total_seconds() for _, e in rows),
        dtype=np.float64,
        count=len(rows),
    )
    seqs.flags.writeable = False
    return _Entry(version, seqs, expires, at)


def _live(entry: _Entry, live_at: datetime | None) -> np.ndarray:
    """The entry's rows unexpired at `live_at`: the array computed last while no row expired (or
    came back, a clock set back) since, else a new one."""
    if live_at is None:
        return entry.seqs
    now = (live_at - _EPOCH).total_seconds()
    if entry.live is not None and entry.live_from <= now < entry.live_until:
        return entry.live
    kept = entry.expires > now
    live = entry.seqs[kept]
    live.flags.writeable = False
    entry.live = live
    entry.live_from = float(entry.expires[~kept].max()) if not kept.all() else -np.inf
    entry.live_until = float(entry.expires[kept].min()) if kept.any() else np.inf
    return live
