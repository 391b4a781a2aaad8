"""Self-monitoring evaluations (issue 23, point 8, docs/orchestration.md "Self-monitoring"): the eval
sets (a tenant's, or the operator's with no tenant) and every run of one against a model, with the
served version the run scored (migration 0021).

A set keeps its items as parsed JSON (the JSONL lines it was uploaded as), the model it runs against
and, when scheduled, every how many seconds. A run keeps its score, the version of the model that
answered and, when it scored worse than the last other version by more than the set's margin, that
version and score (the alert's evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import BigId


class EvalSetRow(Base):
    """An eval set: its items, the model it runs against and its schedule."""

    __tablename__ = "eval_sets"
    __table_args__ = (Index("ix_eval_sets_tenant", "tenant_id"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(160), nullable=False, unique=True)
    # NULL: the operator's set; its runs act as no key.
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The key its runs act as (limits, ledger, trace as that key's requests).
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    # Seconds between scheduled runs; NULL: run on request only.
    interval_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Score points (0..1) a new version may lose before the alert; NULL: the operator's default.
    margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class EvalRunRow(Base):
    """One run of a set against its model's served version."""

    __tablename__ = "eval_runs"
    __table_args__ = (
        Index("ix_eval_runs_set_time", "set_id", "created_at"),
        Index("ix_eval_runs_tenant", "tenant_id"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(160), nullable=False, unique=True)
    set_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    model: Mapped[str] = mapped_column(String(256), nullable=False)
    version: Mapped[str] = mapped_column(String(512), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    passed: Mapped[int] = mapped_column(Integer, nullable=False)
    total: Mapped[int] = mapped_column(Integer, nullable=False)
    # Per item: its score and the answer's first characters.
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    regression: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The last other version's run this one was compared with (None on a first version).
    previous_version: Mapped[str | None] = mapped_column(String(512), nullable=True)
    previous_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class EvalStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def add_set(self, row: EvalSetRow) -> EvalSetRow:
        async with self.db.session() as session:
            session.add(row)
            await session.commit()
            await session.refresh(row)
        return row

    async def sets(self, tenant_id: str | None = None, *, every_tenant: bool = False) -> Sequence[EvalSetRow]:
        """A tenant's sets (None: the operator's), or with `every_tenant` all of them."""
        query = select(EvalSetRow).order_by(EvalSetRow.seq)
        if not every_tenant:
            column = EvalSetRow.tenant_id
            query = query.where(column.is_(None) if tenant_id is None else column == tenant_id)
        async with self.db.session() as session:
            return (await session.scalars(query)).all()

    async def get_set(self, set_id: str) -> EvalSetRow | None:
        async with self.db.session() as session:
            return await session.scalar(select(EvalSetRow).where(EvalSetRow.id == set_id))

    async def delete_set(self, set_id: str) -> bool:
        """The set and its runs; False when there was no such set."""
        async with self.db.session() as session:
            gone = await session.execute(delete(EvalSetRow).where(EvalSetRow.id == set_id))
            await session.execute(delete(EvalRunRow).where(EvalRunRow.set_id == set_id))
            await session.commit()
        return bool(getattr(gone, "rowcount", 0))

    async def add_run(self, row: EvalRunRow) -> EvalRunRow:
        async with self.db.session() as session:
            session.add(row)
            await session.commit()
            await session.refresh(row)
        return row

    async def runs(self, set_id: str, limit: int = 100) -> list[EvalRunRow]:
        """The set's latest runs, oldest first."""
        query = select(EvalRunRow).where(EvalRunRow.set_id == set_id)
        async with self.db.session() as session:
            rows = (await session.scalars(query.order_by(EvalRunRow.seq.desc()).limit(limit))).all()
        return list(reversed(rows))

    async def last_other_version(self, set_id: str, version: str) -> EvalRunRow | None:
        """The latest run of the set that scored another version than `version`."""
        query = (
            select(EvalRunRow)
            .where(EvalRunRow.set_id == set_id, EvalRunRow.version != version)
            .order_by(EvalRunRow.seq.desc())
            .limit(1)
        )
        async with self.db.session() as session:
            return await session.scalar(query)
