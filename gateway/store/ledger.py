"""The usage ledger's writer: rows are buffered in memory and written in batches off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from gateway.store.records import UsageRow
from gateway.store.repository import Store

_log = logging.getLogger("tantra.ledger")


class UsageLedger:
    """`record` never waits: a background task writes what was recorded every `flush_interval_s`
    (sooner when `batch_size` rows are waiting). A database that fails keeps the rows buffered and
    retried; past `max_buffered` the oldest are dropped and counted, so memory stays bounded (the
    batch being written is held apart: rows recorded during a write that succeeds are all kept). A
    write retried after a commit whose answer was lost adds nothing: the request id is unique and
    rows already written are skipped. A batch the database refuses for its data (not for being
    down) is split until the row it refuses is found; that row is set aside (`usage_dead_letter`),
    counted, and the rest is written."""

    def __init__(
        self,
        store: Store,
        *,
        flush_interval_s: float,
        batch_size: int,
        max_buffered: int = 200_000,
        on_set_aside: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._interval = flush_interval_s
        self._batch_size = batch_size
        # Rows waiting to be written, at most `max_buffered`; the batch being written is taken out
        # (`_writing`, at most `batch_size` more), so rows recorded meanwhile never push it out nor
        # are popped in its place when it is done.
        self._rows: deque[UsageRow] = deque()
        self._writing: list[UsageRow] = []
        self._max = max_buffered
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.set_aside = 0
        self._on_set_aside = on_set_aside

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._writing)

    def record(self, row: UsageRow) -> None:
        """Buffer `row`; past `max_buffered` waiting rows the oldest waiting one is dropped (and
        counted). The batch being written is not among them: a write that succeeds loses nothing
        recorded meanwhile, and one that fails is put back and the bound applied then."""
        if len(self._rows) >= self._max:
            self._rows.popleft()
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
                rows = self._rows
                self._writing = [rows.popleft() for _ in range(min(self._batch_size, len(rows)))]
                try:
                    await self._write(self._writing)
                except BaseException:
                    self._keep(self._writing)
                    raise
                finally:
                    self._writing = []

    def _keep(self, batch: list[UsageRow]) -> None:
        """Put back a batch that was not written (or not known to be), ahead of what came since;
        past the bound the oldest go. A retry skips rows already committed (the request id is
        unique)."""
        self._rows.extendleft(reversed(batch))
        while len(self._rows) > self._max:
            self._rows.popleft()
            self.dropped += 1

    async def _write(self, batch: Sequence[UsageRow]) -> None:
        """Write `batch`; a batch refused for its data is halved until each refused row is alone,
        and set aside. Any other failure (the database down) is raised, and the batch kept."""
        try:
            await self._store.add_usage(batch)
        except Exception as exc:
            if not _refused_for_data(exc):
                raise
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
            await self._set_aside(batch[0], exc)
            return
        self.written += len(batch)

    async def _set_aside(self, row: UsageRow, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {getattr(exc, 'orig', exc)}"
        await self._store.set_aside(row, reason)
        self.set_aside += 1
        if self._on_set_aside is not None:
            self._on_set_aside()
        # The request id only: the row may hold what the database refused, and other tenants' rows
        # are never in this line.
        _log.error("usage ledger: set aside request %s's row, which the database refused", row.request_id)

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


def _refused_for_data(exc: Exception) -> bool:
    """The database answered and refused what was sent (a NUL byte, a value too long), as opposed
    to being unreachable: only then does splitting the batch find a culprit."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    return not isinstance(exc, OperationalError | InterfaceError)
