"""The Batch API's rows (migration 0008): a batch (an owned object, gateway/store/owned.py) and one
row per answered input line, written in the same transaction as the batch job's checkpoint so that
each line appears exactly once in the output, whatever crashes (docs/batches.md).

Every read names the caller's tenant (`Owner`): another tenant's batch is simply not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import OwnedColumns, Owner, PageQuery, paged

# The batch's own statuses, OpenAI's (the job's are the runner's: docs/jobs.md).
VALIDATING, FAILED, IN_PROGRESS, FINALIZING = "validating", "failed", "in_progress", "finalizing"
COMPLETED, EXPIRED, CANCELLING, CANCELLED = "completed", "expired", "cancelling", "cancelled"
FINAL = frozenset({FAILED, COMPLETED, EXPIRED, CANCELLED})
# The timestamp each status sets when it is entered.
STAMPS = {
    IN_PROGRESS: "in_progress_at",
    FINALIZING: "finalizing_at",
    COMPLETED: "completed_at",
    FAILED: "failed_at",
    EXPIRED: "expired_at",
    CANCELLING: "cancelling_at",
    CANCELLED: "cancelled_at",
}


class Batch(OwnedColumns, Base):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_tenant_time", "tenant_id", "created_at"),
        Index("ix_batches_created_by", "created_by"),
        Index("ix_batches_end_user", "end_user"),
    )

    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    input_file_id: Mapped[str] = mapped_column(String(160), nullable=False)
    completion_window: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    output_file_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    # Validation errors: OpenAI's errors.data ([{code, message, line, param}]).
    errors: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Its input tokens as estimated at validation, counted against the batch token quotas of its key
    # and tenant until it ends (migration 0011).
    enqueued_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")


class BatchLine(Base):
    """One input line's answer: the output (or error) file's line, as it will be written."""

    __tablename__ = "batch_lines"

    batch_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based, as OpenAI's errors count
    # False: the line goes to the error file (a 4xx or 5xx from the endpoint).
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)


@dataclass(frozen=True)
class BatchPage:
    rows: list[Batch]
    has_more: bool


class BatchStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def add(self, batch: Batch, session: AsyncSession) -> None:
        session.add(batch)

    async def get(self, owner: Owner, batch_id: str) -> Batch | None:
        async with self.db.session() as session:
            return await self.find(session, owner, batch_id)

    async def find(self, session: AsyncSession, owner: Owner, batch_id: str) -> Batch | None:
        query = select(Batch).where(owner.owns(Batch), Batch.id == batch_id)
        return (await session.execute(query)).scalar_one_or_none()

    async def by_id(self, session: AsyncSession, batch_id: str) -> Batch:
        """The batch a job works on (the job names it; no tenant check needed)."""
        found = (await session.execute(select(Batch).where(Batch.id == batch_id))).scalar_one()
        return found

    async def page(self, owner: Owner, query: PageQuery) -> BatchPage:
        base = select(Batch).where(owner.owns(Batch))
        async with self.db.session() as session:
            cursor = None
            if query.after is not None:
                found = await session.execute(
                    select(Batch.created_at, Batch.seq).where(owner.owns(Batch), Batch.id == query.after)
                )
                row = found.first()
                if row is None:
                    return BatchPage([], False)
                cursor = (row[0], row[1])
            rows = list((await session.execute(paged(base, Batch, cursor, query))).scalars())
        return BatchPage(rows[: query.limit], len(rows) > query.limit)

    async def lines(self, batch_id: str, *, ok: bool) -> list[str]:
        """The answered lines of one kind, in input order."""
        query = (
            select(BatchLine.text)
            .where(BatchLine.batch_id == batch_id, BatchLine.ok == ok)
            .order_by(BatchLine.line)
        )
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())


def enter(batch: Batch, status: str, now: datetime) -> None:
    """Move `batch` to `status`, stamping the time it entered it."""
    batch.status = status
    stamp = STAMPS.get(status)
    if stamp is not None and getattr(batch, stamp) is None:
        setattr(batch, stamp, now)
