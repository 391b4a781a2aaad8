"""The fine-tuning jobs API's rows (migration 0012): a job (an owned object, gateway/store/owned.py)
with OpenAI's status and the fine-tuned model it made, and its events (progress, loss), written by
the job's run (docs/fine-tuning.md).

Every read names the caller's tenant (`Owner`): another tenant's job or model is simply not found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import BigId, OwnedColumns, Owner, PageQuery, paged


class FineTuningJobRow(OwnedColumns, Base):
    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        Index("ix_fine_tuning_jobs_tenant_time", "tenant_id", "created_at"),
        Index("ix_fine_tuning_jobs_created_by", "created_by"),
        Index("ix_fine_tuning_jobs_end_user", "end_user"),
        Index("ix_fine_tuning_jobs_model", "fine_tuned_model"),
    )

    model: Mapped[str] = mapped_column(String(200), nullable=False)
    training_file: Mapped[str] = mapped_column(String(160), nullable=False)
    validation_file: Mapped[str | None] = mapped_column(String(160), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    # {"type": "supervised"|"dpo", "<type>": {"hyperparameters": {...}}}, the values chosen.
    method: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Where the adapter's files are in the blob store (a key prefix).
    adapter_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # {"step", "train_loss", "valid_loss", "seconds"} of the finished run.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # OpenAI's error: {"code", "message", "param"}.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class FineTuningEventRow(Base):
    __tablename__ = "fine_tuning_events"
    __table_args__ = (Index("ix_fine_tuning_events_job", "job_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(160), nullable=False, unique=True)
    job_id: Mapped[str] = mapped_column(String(160), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    level: Mapped[str] = mapped_column(String(8), nullable=False)
    type: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


class FineTuningStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def get(self, owner: Owner, job_id: str) -> FineTuningJobRow | None:
        async with self.db.session() as session:
            return await self.find(session, owner, job_id)

    async def find(self, session: AsyncSession, owner: Owner, job_id: str) -> FineTuningJobRow | None:
        query = select(FineTuningJobRow).where(owner.owns(FineTuningJobRow), FineTuningJobRow.id == job_id)
        return (await session.execute(query)).scalar_one_or_none()

    async def by_id(self, session: AsyncSession, job_id: str) -> FineTuningJobRow | None:
        """The job a run works on (the runner names it; no tenant check needed)."""
        query = select(FineTuningJobRow).where(FineTuningJobRow.id == job_id)
        return (await session.execute(query)).scalar_one_or_none()

    async def model(self, owner: Owner, name: str) -> FineTuningJobRow | None:
        """The succeeded job whose fine-tuned model is `name`, when it is the owner's."""
        query = select(FineTuningJobRow).where(
            owner.owns(FineTuningJobRow),
            FineTuningJobRow.fine_tuned_model == name,
            FineTuningJobRow.status == "succeeded",
            FineTuningJobRow.adapter_key.is_not(None),
        )
        async with self.db.session() as session:
            return (await session.execute(query)).scalar_one_or_none()

    async def models(self, owner: Owner) -> list[FineTuningJobRow]:
        query = select(FineTuningJobRow).where(
            owner.owns(FineTuningJobRow),
            FineTuningJobRow.status == "succeeded",
            FineTuningJobRow.adapter_key.is_not(None),
        )
        async with self.db.session() as session:
            return list((await session.execute(query.order_by(FineTuningJobRow.seq))).scalars())

    async def page(self, owner: Owner, query: PageQuery) -> tuple[list[FineTuningJobRow], bool]:
        base = select(FineTuningJobRow).where(owner.owns(FineTuningJobRow))
        async with self.db.session() as session:
            cursor = None
            if query.after is not None:
                found = await session.execute(
                    select(FineTuningJobRow.created_at, FineTuningJobRow.seq).where(
                        owner.owns(FineTuningJobRow), FineTuningJobRow.id == query.after
                    )
                )
                row = found.first()
                if row is None:
                    return [], False
                cursor = (row[0], row[1])
            rows = list((await session.execute(paged(base, FineTuningJobRow, cursor, query))).scalars())
        return rows[: query.limit], len(rows) > query.limit

    async def events(
        self, job_id: str, after: str | None, limit: int
    ) -> tuple[list[FineTuningEventRow], bool]:
        """The job's events newest first (as OpenAI lists them), after the event named `after`."""
        query = select(FineTuningEventRow).where(FineTuningEventRow.job_id == job_id)
        async with self.db.session() as session:
            if after is not None:
                seq = (
                    await session.execute(
                        select(FineTuningEventRow.seq).where(
                            FineTuningEventRow.job_id == job_id, FineTuningEventRow.id == after
                        )
                    )
                ).scalar_one_or_none()
                if seq is None:
                    return [], False
                query = query.where(FineTuningEventRow.seq < seq)
            rows = list(
                (
                    await session.execute(query.order_by(FineTuningEventRow.seq.desc()).limit(limit + 1))
                ).scalars()
            )
        return rows[:limit], len(rows) > limit

    async def forget_model(self, job_id: str) -> None:
        """The job's model deleted: its adapter is gone and the name no longer resolves."""
        async with self.db.session() as session, session.begin():
            row = await self.by_id(session, job_id)
            if row is not None:
                row.adapter_key = None
