"""Retention (issue 21, point 6): the tenants' own policies (`retention_policies`, migration 0017)
and the statements that delete what is past its retention, kind by kind.

A kind's horizon is the operator's default (days, 0: forever) with each tenant's override; a row is
past it when its time column is older than `now - days` for its tenant. Rows that other parts still
act on are spared: running batches and fine-tuning jobs are deleted once finished. Blob-backed kinds
hand back what must leave the blob store (the service deletes it, gateway/services/retention.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Integer, String, and_, delete, func, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.batches import Batch, BatchLine
from gateway.store.completions import StoredCompletion
from gateway.store.conversations import StoredConversation, StoredItem
from gateway.store.database import Database
from gateway.store.evals import EvalRunRow
from gateway.store.file_models import StoredFile
from gateway.store.files import DELETING, PROCESSED
from gateway.store.fine_tuning import FineTuningEventRow, FineTuningJobRow
from gateway.store.memories import StoredMemory, StoredMemoryEvent
from gateway.store.memory_recalls import StoredRecall
from gateway.store.models import AuditEvent, Base, UsageRecord
from gateway.store.moderation import StoredFlag
from gateway.store.records import AuditContext
from gateway.store.responses import ResponseEvent, StoredResponse
from gateway.store.voices import StoredVoice

BATCH_DONE = ("completed", "failed", "expired", "cancelled")
FINE_TUNING_DONE = ("succeeded", "failed", "cancelled")
# Rows handled per statement, so that one run never holds SQLite's write lock for long.
CHUNK = 500


class RetentionPolicy(Base):
    """A tenant's retention of one kind of object, in days (0: forever)."""

    __tablename__ = "retention_policies"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    days: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


@dataclass(frozen=True)
class Horizon:
    """Which rows of one kind are past their retention: the default and the tenants' overrides."""

    default_days: int
    overrides: Mapping[str, int] = field(default_factory=dict)

    def expired(self, tenant: Any, when: Any, now: datetime) -> ColumnElement[bool] | None:
        """The condition on the `tenant` and `when` columns; None when nothing of the kind expires."""
        clauses: list[ColumnElement[bool]] = [
            and_(tenant == tenant_id, when < now - timedelta(days=days))
            for tenant_id, days in self.overrides.items()
            if days > 0
        ]
        if self.default_days > 0:
            rest: ColumnElement[bool] = when < now - timedelta(days=self.default_days)
            if self.overrides:
                rest = and_(or_(tenant.is_(None), tenant.not_in(list(self.overrides))), rest)
            clauses.append(rest)
        return or_(*clauses) if clauses else None

    def cutoff(self, tenant_id: str | None, now: datetime) -> datetime | None:
        """When this tenant's objects of the kind start to expire (None: never), for the panel."""
        days = self.overrides.get(tenant_id, self.default_days) if tenant_id else self.default_days
        return now - timedelta(days=days) if days > 0 else None


@dataclass
class Swept:
    """What one sweep of a kind removed from SQL, and the blob keys and index rows to remove."""

    rows: int = 0
    blob_keys: list[str] = field(default_factory=list)
    # Memories: (tenant, row numbers) to forget in the vector index.
    vectors: dict[str | None, list[int]] = field(default_factory=dict)
    # Memories: (tenant, ids) to forget in the knowledge graph.
    memory_ids: dict[str | None, list[str]] = field(default_factory=dict)
    # Whole blob keys to delete (custom voices' clips), where `blob_keys` are adapter prefixes.
    blobs: list[str] = field(default_factory=list)


class RetentionStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    # Policies ------------------------------------------------------------------------------------

    async def policies(self, tenant_id: str | None = None) -> dict[str, dict[str, int]]:
        """kind -> {tenant: days}, for one tenant or all."""
        query = select(RetentionPolicy)
        if tenant_id is not None:
            query = query.where(RetentionPolicy.tenant_id == tenant_id)
        found: dict[str, dict[str, int]] = {}
        async with self.db.session() as session:
            for row in (await session.scalars(query)).all():
                found.setdefault(row.kind, {})[row.tenant_id] = row.days
        return found

    async def set_policies(
        self, tenant_id: str, days: Mapping[str, int | None], now: datetime, audit: AuditContext
    ) -> None:
        """Set (a number) or remove (None: back to the default) the tenant's retention of each kind,
        audited in the same transaction."""
        async with self.db.session() as session:
            session.add(
                AuditEvent(
                    created_at=now,
                    actor=audit.actor,
                    action="retention.set",
                    target_type="tenant",
                    target_id=tenant_id,
                    request_id=audit.request_id,
                    client_ip=audit.client_ip,
                    details={"days": dict(days)},
                )
            )
            for kind, value in days.items():
                await session.execute(
                    delete(RetentionPolicy).where(
                        RetentionPolicy.tenant_id == tenant_id, RetentionPolicy.kind == kind
                    )
                )
                if value is not None:
                    session.add(RetentionPolicy(tenant_id=tenant_id, kind=kind, days=value, updated_at=now))
            await session.commit()

    async def horizons(self, defaults: Mapping[str, int]) -> dict[str, Horizon]:
        overrides = await self.policies()
        return {kind: Horizon(days, overrides.get(kind, {})) for kind, days in defaults.items()}

    # Counting (the panel's "what will expire") ---------------------------------------------------

    async def due(
        self, horizons: Mapping[str, Horizon], at: datetime, tenant_id: str | None = None
    ) -> dict[str, dict[str | None, int]]:
        """Per kind and tenant, how many rows (of one tenant, or all) are past their retention at `at`."""
        counts: dict[str, dict[str | None, int]] = {}
        async with self.db.session() as session:
            for kind, horizon in horizons.items():
                table, tenant, when, extra = _TARGETS[kind]
                counts[kind] = {}
                condition = horizon.expired(tenant, when, at)
                if condition is None:
                    continue
                query = select(tenant, func.count()).select_from(table).where(condition, *extra)
                if tenant_id is not None:
                    query = query.where(tenant == tenant_id)
                for owner, count in (await session.execute(query.group_by(tenant))).all():
                    counts[kind][owner] = int(count)
        return counts

    # Sweeping ------------------------------------------------------------------------------------

    async def sweep(self, kind: str, horizon: Horizon, now: datetime) -> Swept:
        """Delete one chunk of `kind` past its retention (call again while `rows` is CHUNK)."""
        table, tenant, when, extra = _TARGETS[kind]
        condition = horizon.expired(tenant, when, now)
        if condition is None:
            return Swept()
        async with self.db.session() as session:
            rows = (
                (await session.execute(select(table).where(condition, *extra).limit(CHUNK))).scalars().all()
            )
            swept = Swept(rows=len(rows))
            if kind == "files":
                # A tombstone first: gone for the API at once; the blob, then the row, go next.
                ids = [row.id for row in rows]
                await session.execute(
                    update(StoredFile).where(StoredFile.id.in_(ids)).values(status=DELETING)
                )
                await session.commit()
                return swept
            await delete_children(session, kind, rows, swept)
            key = table.__mapper__.primary_key[0]  # seq, or the ledger's id
            await session.execute(delete(table).where(key.in_([getattr(row, key.key) for row in rows])))
            await session.commit()
        return swept

    async def expired_files(self, now: datetime, limit: int = CHUNK) -> list[tuple[str, str]]:
        """(file id, blob key) of tombstoned files and of files past their own `expires_at`."""
        query = select(StoredFile.id, StoredFile.blob_key).where(
            or_(
                StoredFile.status == DELETING,
                and_(StoredFile.status == PROCESSED, StoredFile.expires_at <= now),
            )
        )
        async with self.db.session() as session:
            return [(row.id, row.blob_key) for row in (await session.execute(query.limit(limit))).all()]

    async def remove_files(self, ids: list[str]) -> None:
        async with self.db.session() as session:
            await session.execute(delete(StoredFile).where(StoredFile.id.in_(ids)))
            await session.commit()


async def delete_children(session: Any, kind: str, rows: Any, swept: Swept) -> None:
    """Delete what belongs to the rows about to go, and note what leaves other stores."""
    ids = [row.id for row in rows if hasattr(row, "id")]
    if kind == "responses":
        await session.execute(delete(ResponseEvent).where(ResponseEvent.response_id.in_(ids)))
    elif kind == "conversations":
        seqs = [row.seq for row in rows]
        await session.execute(delete(StoredItem).where(StoredItem.conversation_seq.in_(seqs)))
    elif kind == "batches":
        await session.execute(delete(BatchLine).where(BatchLine.batch_id.in_(ids)))
    elif kind == "fine_tuning_jobs":
        await session.execute(delete(FineTuningEventRow).where(FineTuningEventRow.job_id.in_(ids)))
        swept.blob_keys.extend(row.adapter_key for row in rows if row.adapter_key)
    elif kind == "memories":
        await session.execute(delete(StoredMemoryEvent).where(StoredMemoryEvent.memory_id.in_(ids)))
        for row in rows:
            swept.vectors.setdefault(row.tenant_id, []).append(row.seq)
            swept.memory_ids.setdefault(row.tenant_id, []).append(row.id)
    elif kind == "custom_voices":
        swept.blobs.extend(row.blob_key for row in rows)


# kind -> (table, its tenant column, the time retention counts from, conditions sparing live rows)
_TARGETS: dict[str, tuple[Any, Any, Any, tuple[Any, ...]]] = {
    "ledger": (UsageRecord, UsageRecord.tenant_id, UsageRecord.created_at, ()),
    "responses": (StoredResponse, StoredResponse.tenant_id, StoredResponse.created_at, ()),
    "chat_completions": (StoredCompletion, StoredCompletion.tenant_id, StoredCompletion.created_at, ()),
    "conversations": (StoredConversation, StoredConversation.tenant_id, StoredConversation.created_at, ()),
    "files": (
        StoredFile,
        StoredFile.tenant_id,
        StoredFile.created_at,
        (StoredFile.status == PROCESSED,),
    ),
    "batches": (Batch, Batch.tenant_id, Batch.created_at, (Batch.status.in_(BATCH_DONE),)),
    "memories": (StoredMemory, StoredMemory.tenant_id, StoredMemory.updated_at, ()),
    "memory_recalls": (StoredRecall, StoredRecall.tenant_id, StoredRecall.created_at, ()),
    "moderation_flags": (StoredFlag, StoredFlag.tenant_id, StoredFlag.created_at, ()),
    "fine_tuning_jobs": (
        FineTuningJobRow,
        FineTuningJobRow.tenant_id,
        FineTuningJobRow.created_at,
        (FineTuningJobRow.status.in_(FINE_TUNING_DONE),),
    ),
    "eval_runs": (EvalRunRow, EvalRunRow.tenant_id, EvalRunRow.created_at, ()),
    "custom_voices": (StoredVoice, StoredVoice.tenant_id, StoredVoice.created_at, ()),
}
