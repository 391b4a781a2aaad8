"""Search queries' vectors kept per replica (docs/memory.md): a chat that searches memory with the
same text as an earlier search of its tenant skips the embedding call (37-48 ms on the CPU engine).

Entries are keyed by (tenant, embedding model, exact text), the least recently used go first past
`max_entries`, and none outlives `ttl_s`: a query's text is the end user's words, so a GDPR erasure
clears the tenant's entries on the replica that runs it at once, and on every other replica they are
gone within `ttl_s` at most.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

Key = tuple[str | None, str, str]  # tenant, embedding model, text


class QueryCache:
    def __init__(
        self, max_entries: int = 1024, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> np.ndarray | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        at, vector = entry
        if self._clock() - at > self._ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return vector

    def put(self, key: Key, vector: np.ndarray) -> None:
        if self._max <= 0:
            return
        self._entries[key] = (self._clock(), vector)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget(self, tenant_id: str | None) -> int:
        """Drop the tenant's entries (an erasure of the tenant or one of its end users: the cache
        does not know whose words a text was); how many went."""
        gone = [key for key in self._entries if key[0] == tenant_id]
        for key in gone:
            del self._entries[key]
        return len(gone)
