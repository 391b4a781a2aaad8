"""Governance's parts built from the components (a builder of the composition root): the tenants'
usage and costs API, and retention as a scheduled job of the job runner (docs/governance.md)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from gateway.background import cancelled
from gateway.components import Components
from gateway.learning_setup import learning
from gateway.services.eval_runs import EvalOptions, EvalRuns
from gateway.services.gdpr import Gdpr
from gateway.services.learning_loop import LearningLoop
from gateway.services.memory_compress import CompressOptions, MemoryCompression
from gateway.services.retention import Retention
from gateway.services.usage_api import UsageAnalytics
from gateway.store.evals import EvalStore
from gateway.store.gdpr_store import GdprStore
from gateway.store.retention import RetentionStore
from gateway.store.usage_buckets import UsageBuckets

_log = logging.getLogger("tantra.governance")
Scheduled = Retention | EvalRuns | MemoryCompression | LearningLoop
# Waits between tries to schedule retention while the store cannot be reached (at most a minute).
_FIRST_RETRY_S = 1.0
_LAST_RETRY_S = 60.0


@dataclass(eq=False)
class Governance:
    usage: UsageAnalytics
    # None with TANTRA_RETENTION_ENABLED off (nothing is deleted by age).
    retention: Retention | None = None
    # GDPR export and erasure: always built (the admin API's /exports and /erasures).
    gdpr: Gdpr | None = None
    # Self-monitoring evaluations (docs/orchestration.md); None with TANTRA_EVALS_ENABLED off.
    evals: EvalRuns | None = None
    # Memory compression (TANTRA_MEMORY_COMPRESS_ENABLED), scheduled as retention is.
    compression: MemoryCompression | None = None
    # The learning loop's check (docs/fine-tuning.md), scheduled as retention is.
    learning: LearningLoop | None = None
    _scheduling: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)

    async def start(self) -> None:
        """After the components started (the database migrated): this slot's retention, eval check
        and memory compression jobs, in the background: a store that is down at start must not stop
        the gateway, which answers 503s until it is back."""
        if self._scheduling:
            return
        jobs = (
            ("retention", self.retention),
            ("evals", self.evals),
            ("memory-compress", self.compression),
            ("learning-check", self.learning),
        )
        for name, scheduled in jobs:
            if scheduled is not None:
                task = asyncio.create_task(self._schedule(name, scheduled), name=f"{name}-schedule")
                self._scheduling.append(task)

    async def stop(self) -> None:
        for task in self._scheduling:
            await cancelled(task)
        self._scheduling = []

    @staticmethod
    async def _schedule(name: str, scheduled: Scheduled) -> None:
        wait = _FIRST_RETRY_S
        while True:
            try:
                await scheduled.schedule()
                return
            except Exception as exc:  # the store unreachable, or refusing: tried again later
                _log.warning("%s: could not schedule its job (%s); retrying in %.0f s", name, exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, _LAST_RETRY_S)


def governance(parts: Components) -> Governance:
    settings, shared = parts.settings, parts.shared
    usage = UsageAnalytics(parts.access.admission, parts.access.admin_guard, UsageBuckets(shared.database))
    blobs = parts.storage.blobs if parts.storage is not None else None
    index = parts.memory.core.index if parts.memory is not None else None
    graph = parts.memory.core.graph if parts.memory is not None else None
    scopes = parts.memory.core.scopes if parts.memory is not None else None
    erased = scopes.erased if scopes is not None else None
    forget = parts.access.key_admin.forget_tenant
    # The second pass waits for the ledger's batches in flight (two flushes and a margin).
    settle_s = 2 * settings.ledger_flush_interval_s + 1
    gdpr = Gdpr(
        GdprStore(shared.database),
        shared.jobs,
        blobs=blobs,
        index=index,
        graph=graph.store if graph is not None else None,
        forget_tenant=forget,
        forget_queries=parts.memory.core.queries.forget if parts.memory is not None else None,
        settle_s=settle_s,
    )
    gdpr.erased_memories = erased
    stores = parts.vector_stores.core if parts.vector_stores is not None else None
    gdpr.forget_files = stores.forget_user_files if stores is not None else None
    gdpr.register()
    evals = _evals(parts)
    compression = _compression(parts)
    loop = learning(parts)
    if not settings.retention_enabled:
        return Governance(usage, gdpr=gdpr, evals=evals, compression=compression, learning=loop)
    retention = Retention(
        RetentionStore(shared.database),
        shared.jobs,
        settings.retention_defaults,
        interval_s=settings.retention_interval_s,
        blobs=blobs,
        index=index,
        graph=graph.store if graph is not None else None,
    )
    retention.erased_memories = erased
    retention.forget_files = stores.forget_files if stores is not None else None
    retention.register()
    return Governance(usage, retention, gdpr=gdpr, evals=evals, compression=compression, learning=loop)


def _evals(parts: Components) -> EvalRuns | None:
    settings = parts.settings
    if not settings.evals_enabled:
        return None
    options = EvalOptions(
        schedule_s=settings.evals_schedule_s,
        margin=settings.evals_regression_margin,
        max_items=settings.evals_max_items,
    )
    evals = EvalRuns(
        EvalStore(parts.shared.database), parts.shared.jobs, parts.catalog, parts.metrics, options
    )
    evals.register()
    return evals


def _compression(parts: Components) -> MemoryCompression | None:
    settings = parts.settings
    if parts.memory is None or not settings.memory_compress_enabled:
        return None
    options = CompressOptions(
        model=parts.memory.core.options.extraction_model,
        max_per_user=settings.memory_compress_max_per_user,
        batch=settings.memory_compress_batch,
        interval_s=settings.memory_compress_interval_s,
        max_tokens=settings.memory_extraction_max_tokens,
    )
    compression = MemoryCompression(parts.memory.core, parts.shared.jobs, options)
    compression.register()
    return compression
