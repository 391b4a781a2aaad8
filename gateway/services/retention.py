"""Retention (issue 21, point 6): a scheduled job of the durable job runner deletes what is past its
retention, kind by kind, from SQL and the blob store (and memories from the vector index).

Scheduling: one `retention` job per interval slot, its id the slot's start (`retention-<epoch>`), so
that replicas submitting the same slot make one job (the second insert is refused and ignored). Each
run submits the next slot's job before it ends; every replica submits the current slot's at start,
so a schedule lost with its database row comes back. Runs are idempotent: a run that dies halfway is
retried, and what it deleted stays deleted.

Order for blob-backed objects: files are tombstoned first (the API no longer shows them), then the
blob goes, then the row; a fine-tuning job's adapter blobs go before its row. A crash in between
leaves work the next run finishes, never a row whose blob is gone without a tombstone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from gateway.blobs import BlobStore
from gateway.jobs import Job, JobOptions, JobRunner
from gateway.memory.graph import GraphStore
from gateway.memory.index import VectorIndex
from gateway.services.adapters import ADAPTER_FILES
from gateway.services.files import ForgetFiles
from gateway.store import utcnow
from gateway.store.retention import CHUNK, Horizon, RetentionStore

KIND = "retention"
# A ledger kept shorter than this would forget spending a monthly budget still counts.
LEDGER_MIN_DAYS = 31
_log = logging.getLogger("tantra.retention")


class Retention:
    def __init__(
        self,
        store: RetentionStore,
        runner: JobRunner,
        defaults: Callable[[], Mapping[str, int]],
        *,
        interval_s: float,
        blobs: BlobStore | None = None,
        index: VectorIndex | None = None,
        graph: GraphStore | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self._runner = runner
        self._defaults = defaults
        self._interval_s = interval_s
        self._blobs = blobs
        self._index = index
        self._graph = graph
        # Moves the tenants' memory scope versions once their rows are swept (scope caches; set
        # once built).
        self.erased_memories: Callable[[str | None], Awaitable[None]] | None = None
        # Takes the files it deletes out of the vector stores holding them (set when served).
        self.forget_files: ForgetFiles | None = None
        # Naive UTC now; tests move it forward.
        self.clock = clock

    def register(self) -> None:
        # Below interactive jobs, one run at a time per replica; the slot's id keeps one per interval.
        self._runner.register(KIND, self.handle, priority=-5, concurrency=1)

    async def schedule(self, after: datetime | None = None) -> None:
        """Submit the job of the slot holding `after` (default: now), unless it exists already."""
        at = after or self.clock()
        slot = _epoch_slot(at, self._interval_s)
        job_id = f"{KIND}-{slot}"
        if await self._runner.get(job_id) is not None:
            return
        run_after = datetime(1970, 1, 1) + timedelta(seconds=slot)
        # Another replica may have submitted this slot first: its insert won, this one is refused.
        with contextlib.suppress(IntegrityError):
            await self._runner.submit(KIND, None, {}, options=JobOptions(run_after=run_after, job_id=job_id))

    async def handle(self, job: Job) -> dict[str, Any]:
        counts = await self.sweep(job=job)
        await self.schedule(self.clock() + timedelta(seconds=self._interval_s))
        await self._forget_old_runs(keep=job.id)
        return counts

    async def _forget_old_runs(self, keep: str) -> None:
        """The rows of this kind's runs that ended over a day ago (one a slot would pile up)."""
        before = utcnow() - timedelta(days=1)
        for status in ("completed", "failed"):
            for record in await self._runner.queue.list(kind=KIND, status=status, limit=100):
                if record.id != keep and record.finished_at is not None and record.finished_at < before:
                    await self._runner.queue.delete(record.id)

    def defaults(self) -> dict[str, int]:
        return dict(self._defaults())

    async def horizons(self) -> dict[str, Horizon]:
        return await self.store.horizons(self._defaults())

    async def due(self, tenant_id: str | None, *, within_days: int = 0) -> dict[str, int]:
        """How many objects of each kind (of one tenant, or all) are past their retention
        `within_days` from now: what the next runs will delete."""
        by_tenant = await self.due_by_tenant(tenant_id, within_days=within_days)
        return {kind: sum(counts.values()) for kind, counts in by_tenant.items()}

    async def due_by_tenant(
        self, tenant_id: str | None = None, *, within_days: int = 0
    ) -> dict[str, dict[str | None, int]]:
        """The same per kind and tenant (the panel's "what will expire")."""
        at = self.clock() + timedelta(days=within_days)
        return await self.store.due(await self.horizons(), at, tenant_id)

    async def sweep(self, *, job: Job | None = None) -> dict[str, int]:
        """One pass over every kind: the rows deleted per kind (files: their blobs too)."""
        now = self.clock()
        counts: dict[str, int] = {}
        for kind, horizon in (await self.horizons()).items():
            counts[kind] = 0
            while True:
                if job is not None:
                    job.check()
                swept = await self.store.sweep(kind, horizon, now)
                counts[kind] += swept.rows
                await self._forget(swept.blob_keys, swept.vectors)
                if self.erased_memories is not None:
                    for tenant_id in swept.vectors:
                        await self.erased_memories(tenant_id)
                await self._delete_blobs(swept.blobs)
                await self._forget_graph(swept.memory_ids)
                if swept.rows < CHUNK:
                    break
        counts["files"] = await self._files(now)
        _log.info("retention: deleted %s", {kind: n for kind, n in counts.items() if n})
        return counts

    async def _files(self, now: datetime) -> int:
        """Tombstoned files and those past their own `expires_at`: the blob, then the row (none
        without the Files API's blob store: its rows wait for it)."""
        if self._blobs is None:
            return 0
        deleted = 0
        while batch := await self.store.expired_files(now):
            if self.forget_files is not None:
                await self.forget_files([file_id for file_id, _ in batch])
            for _, blob_key in batch:
                await self._blobs.delete(blob_key)
            await self.store.remove_files([file_id for file_id, _ in batch])
            deleted += len(batch)
            if len(batch) < CHUNK:
                break
        return deleted

    async def _forget(self, adapter_prefixes: list[str], vectors: Mapping[str | None, list[int]]) -> None:
        if self._blobs is not None:
            for prefix in adapter_prefixes:
                for name in ADAPTER_FILES:
                    await self._blobs.delete(f"{prefix}{name}")
        if self._index is not None:
            for tenant_id, seqs in vectors.items():
                await self._index.remove(tenant_id, seqs)

    async def _delete_blobs(self, keys: list[str]) -> None:
        if self._blobs is not None:
            for key in keys:
                await self._blobs.delete(key)

    async def _forget_graph(self, memory_ids: Mapping[str | None, list[str]]) -> None:
        if self._graph is not None:
            for tenant_id, ids in memory_ids.items():
                await self._graph.forget(tenant_id, ids)


def _epoch_slot(at: datetime, interval_s: float) -> int:
    """The start of `at`'s slot (naive UTC) in seconds since the epoch."""
    seconds = (at - datetime(1970, 1, 1)).total_seconds()
    return int(seconds // interval_s * interval_s)
