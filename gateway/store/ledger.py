"""The usage ledger's writer: rows are buffered in memory and written in batches off the request path."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.store.batched import BatchedWriter
from gateway.store.records import UsageRow
from gateway.store.repository import Store

_log = logging.getLogger("tantra.ledger")


class UsageLedger(BatchedWriter[UsageRow]):
    """The batched writer (gateway/store/batched.py) of usage rows. A write retried after a commit
    whose answer was lost adds nothing: the request id is unique and rows already written are
    skipped. A row the database refuses for its data (not for being down) is set aside in
    `usage_dead_letter`, counted, and the rest is written."""

    def __init__(
        self,
        store: Store,
        *,
        flush_interval_s: float,
        batch_size: int,
        max_buffered: int = 200_000,
        on_set_aside: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            store.add_usage,
            name="usage-ledger",
            flush_interval_s=flush_interval_s,
            batch_size=batch_size,
            max_buffered=max_buffered,
            refused=self._set_aside,
        )
        self._store = store
        self._on_set_aside = on_set_aside

    @property
    def set_aside(self) -> int:
        return self.refused

    async def _set_aside(self, row: UsageRow, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {getattr(exc, 'orig', exc)}"
        await self._store.set_aside(row, reason)
        if self._on_set_aside is not None:
            self._on_set_aside()
        # The request id only: the row may hold what the database refused, and other tenants' rows
        # are never in this line.
        _log.error("usage ledger: set aside request %s's row, which the database refused", row.request_id)
