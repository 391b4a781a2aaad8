"""Governance's parts built from the components (a builder of the composition root): the tenants'
usage and costs API, and retention as a scheduled job of the job runner (docs/governance.md)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.components import Components
from gateway.services.retention import Retention
from gateway.services.usage_api import UsageAnalytics
from gateway.store.retention import RetentionStore
from gateway.store.usage_buckets import UsageBuckets


@dataclass(eq=False)
class Governance:
    usage: UsageAnalytics
    # None with TANTRA_RETENTION_ENABLED off (nothing is deleted by age).
    retention: Retention | None = None

    async def start(self) -> None:
        """After the components started (the database migrated): this slot's retention job."""
        if self.retention is not None:
            await self.retention.schedule()


def governance(parts: Components) -> Governance:
    settings, shared = parts.settings, parts.shared
    usage = UsageAnalytics(parts.access.admission, parts.access.admin_guard, UsageBuckets(shared.database))
    if not settings.retention_enabled:
        return Governance(usage)
    retention = Retention(
        RetentionStore(shared.database),
        shared.jobs,
        settings.retention_defaults,
        interval_s=settings.retention_interval_s,
        blobs=parts.storage.blobs if parts.storage is not None else None,
        index=parts.memory.core.index if parts.memory is not None else None,
    )
    retention.register()
    return Governance(usage, retention)
