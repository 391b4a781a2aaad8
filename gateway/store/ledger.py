"""The usage ledger's writer: rows are buffered in memory and written in batches off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from gateway.store.records import UsageRow
from gateway.store.repository import Store

_log = logging.getLogger("tantra.ledger")


class UsageLedger:
    """`record` never waits: a background task writes what was recorded every `flush_interval_s`
    (sooner when `batch_size` rows are waiting). A database that fails keeps the rows buffered and
    retried; past `max_buffered` the oldest are dropped and counted, so memory stays bounded."""

    def __init__(
        self, store: Store, *, flush_interval_s: float, batch_size: int, max_buffered: int = 200_000
    ) -> None:
        self._store = store
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._rows: deque[UsageRow] = deque(maxlen=max_buffered)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._rows)

    def record(self, row: UsageRow) -> None:
        if len(self._rows) == self._rows.maxlen:
            self.dropped += 1
        self._rows.append(row)
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-ledger")

    async def flush(self) -> None:
        """Write everything recorded so far; raises if the database refuses."""
        async with self._lock:
            while self._rows:
                batch = [self._rows[i] for i in range(min(self._batch_size, len(self._rows)))]
                await self._store.add_usage(batch)
                for _ in batch:
                    self._rows.popleft()
                self.written += len(batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            _log.exception("usage ledger: %d rows could not be written at shutdown", len(self._rows))

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                _log.exception("usage ledger: write failed; %d rows kept for the next try", len(self._rows))
                await asyncio.sleep(self._interval)
