"""A batched writer for rows recorded on the request path and written off it: the usage ledger
(gateway/store/ledger.py, which sets refused rows aside in its dead-letter table) and the stored
objects of the stateful APIs share it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from gateway.background import cancelled

RowT = TypeVar("RowT")


class BatchedWriter(Generic[RowT]):
    """`record` never waits: a background task writes what was recorded every `flush_interval_s`
    (sooner when `batch_size` rows wait), and `flush` writes it at once (a read that must see its
    replica's own writes calls it first). A database that is down keeps the rows for the next try,
    at most `max_buffered` (the oldest dropped past it, counted); a batch the database refuses for
    its data is halved until the refused row is alone, which is counted and handed to `refused`
    (or, without one, dropped and logged by `name`, never its content). `write` must skip rows
    already written (a retry after a commit whose answer was lost). The batch being written is held
    apart from the waiting rows: rows recorded during a write are never pushed out by it."""

    def __init__(
        self,
        write: Callable[[Sequence[RowT]], Awaitable[None]],
        *,
        name: str,
        flush_interval_s: float,
        batch_size: int,
        max_buffered: int = 50_000,
        refused: Callable[[RowT, Exception], Awaitable[None]] | None = None,
    ) -> None:
        self._write_rows = write
        self._log = logging.getLogger(f"tantra.{name}")
        self._name = name
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._max = max_buffered
        self._refused = refused
        self._rows: deque[RowT] = deque()
        self._writing: list[RowT] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0
        self.refused = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._writing)

    def record(self, row: RowT) -> None:
        """Buffer `row`; past `max_buffered` waiting rows the oldest waiting one is dropped (and
        counted)."""
        if len(self._rows) >= self._max:
            self._rows.popleft()
            self.dropped += 1
        self._rows.append(row)
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def flush(self) -> None:
        """Write everything recorded so far; raises if the database cannot be reached."""
        if not self._rows and not self._writing:
            return
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

    def _keep(self, batch: list[RowT]) -> None:
        """Put back a batch that was not written (or not known to be), ahead of what came since;
        past the bound the oldest go."""
        self._rows.extendleft(reversed(batch))
        while len(self._rows) > self._max:
            self._rows.popleft()
            self.dropped += 1

    async def _write(self, batch: Sequence[RowT]) -> None:
        try:
            await self._write_rows(batch)
        except Exception as exc:
            if not _refused_for_data(exc):
                raise
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
            self.refused += 1
            if self._refused is not None:
                await self._refused(batch[0], exc)
            else:
                self._log.error(
                    "%s: the database refused a row (%s); it is dropped", self._name, type(exc).__name__
                )
            return
        self.written += len(batch)

    async def close(self) -> None:
        """Stop the background task between writes, never during one: a write cancelled mid-commit
        leaves its connection to be rolled back under it (SQLite's then fails), and the rows it held
        could be lost with the flush after it."""
        async with self._lock:
            await cancelled(self._task)
            self._task = None
        try:
            await self.flush()
        except Exception:
            self._log.exception("%s: %d rows could not be written at shutdown", self._name, len(self._rows))

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
                self._log.exception(
                    "%s: write failed; %d rows kept for the next try", self._name, self.pending
                )
                await asyncio.sleep(self._interval)


def _refused_for_data(exc: Exception) -> bool:
    """The database answered and refused what was sent (a NUL byte, a value too long), as opposed
    to being unreachable: only then does splitting the batch find a culprit."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    return not isinstance(exc, OperationalError | InterfaceError)
