"""Looked-up keys kept in memory, so the hot path never waits on the database."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from gateway.store import KeyRecord


@dataclass(frozen=True)
class _Entry:
    record: KeyRecord | None
    expires: float
    stored: float


class KeyCache:
    """Key hash -> KeyRecord (or None: no such key), least recently used first out.

    Entries live `ttl_s` while invalidations are known to arrive (Redis pub/sub), `degraded_ttl_s`
    while not, so a change reaches every replica within about a second either way. "Known" is
    `confirmed_at`: the send time of the last PING the subscription answered, before which every
    published change has been applied (Redis answers in order). An entry is trusted for
    `degraded_ttl_s` past the later of its lookup and that time, so a silent (half-open) subscription
    cannot keep an entry alive longer than a dead one. `generation` moves on every invalidation; a
    lookup that started before one is not cached, so an answer read from the database just before a
    revocation cannot outlive it.

    Unknown keys are remembered apart (`max_negative` entries, at most 5 s): a flood of guessed
    keys evicts other guesses, never a valid key, so it cannot push tenants' lookups back onto
    the database.
    """

    def __init__(
        self, *, ttl_s: float, degraded_ttl_s: float, max_entries: int = 50_000, max_negative: int = 10_000
    ) -> None:
        self._ttl_s = ttl_s
        self.degraded_ttl_s = degraded_ttl_s
        self._max_entries = max_entries
        self._max_negative = max_negative
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._negative: OrderedDict[str, float] = OrderedDict()  # key hash -> monotonic expiry
        self.generation = 0
        self.confirmed_at = -math.inf  # monotonic: every invalidation published before it applied
        self.hits = 0
        self.misses = 0

    @property
    def live(self) -> bool:
        """Invalidations are known to arrive: the subscription answered a PING recently enough."""
        return time.monotonic() - self.confirmed_at <= self.degraded_ttl_s

    def confirm(self, sent_at: float) -> None:
        """A PING sent at `sent_at` (monotonic) was answered: every change published before is applied."""
        self.confirmed_at = max(self.confirmed_at, sent_at)

    def distrust(self) -> None:
        self.confirmed_at = -math.inf

    def get(self, key_hash: str) -> tuple[bool, KeyRecord | None]:
        entry = self._entries.get(key_hash)
        now = time.monotonic()
        if (
            entry is None
            or entry.expires <= now
            or now - max(entry.stored, self.confirmed_at) > self.degraded_ttl_s
        ):
            expires = self._negative.get(key_hash)
            if expires is not None and expires > now:
                self.hits += 1
                return True, None
            self.misses += 1
            return False, None
        self._entries.move_to_end(key_hash)
        self.hits += 1
        return True, entry.record

    def stale(self, key_hash: str) -> KeyRecord | None:
        """A valid key's entry past its TTL but still held, while invalidations arrive (so it was
        not revoked or changed meanwhile): what a throttled address is served instead of a lookup."""
        entry = self._entries.get(key_hash)
        return entry.record if entry is not None and self.live else None

    def put(self, key_hash: str, record: KeyRecord | None, generation: int) -> None:
        if generation != self.generation:
            return
        now = time.monotonic()
        ttl = self._ttl_s if self.live else self.degraded_ttl_s
        if record is None:
            self._remember_unknown(key_hash, min(ttl, 5.0))
            return
        self._negative.pop(key_hash, None)
        self._entries[key_hash] = _Entry(record, now + ttl, now)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _remember_unknown(self, key_hash: str, ttl: float) -> None:
        if self._max_negative <= 0:
            return
        self._entries.pop(key_hash, None)
        self._negative[key_hash] = time.monotonic() + ttl
        self._negative.move_to_end(key_hash)
        while len(self._negative) > self._max_negative:
            self._negative.popitem(last=False)

    def invalidate(self, *, key_id: str | None = None, tenant_id: str | None = None) -> None:
        self.generation += 1
        self._negative.clear()  # a key just created may be among them
        for key_hash, entry in list(self._entries.items()):
            record = entry.record
            if record is None or record.key_id == key_id or record.tenant_id == tenant_id:
                del self._entries[key_hash]

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._negative.clear()

    @property
    def unknown(self) -> int:
        """Unknown keys remembered now."""
        return len(self._negative)

    def __len__(self) -> int:
        return len(self._entries)
