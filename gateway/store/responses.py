"""Stored responses (the Responses API): the table, the plain record the store hands out, and their
reads and writes, every read scoped to the caller's tenant (`Owner`); and a background response's
stream events, kept so that a client may resume its stream on any replica."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import BigId, OwnedColumns, Owner

# A response no longer running: the states a cancel leaves alone and a stream's reader ends at.
FINAL = ("completed", "failed", "incomplete", "cancelled")


class StoredResponse(OwnedColumns, Base):
    """One response created with `store` (migration 0009)."""

    __tablename__ = "responses"
    __table_args__ = (
        Index("ix_responses_tenant_time", "tenant_id", "created_at"),
        Index("ix_responses_created_by", "created_by"),
        Index("ix_responses_end_user", "end_user"),
    )

    model: Mapped[str] = mapped_column(String(200), nullable=False)
    # queued, in_progress, completed, incomplete, failed, cancelled (OpenAI's statuses).
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    background: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    previous_response_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    # The background job running it (gateway/jobs), to cancel it.
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Every item the engine was given: the previous responses' inputs and outputs, then this
    # request's input, each with an id (what input_items lists; a follow-up's history).
    input_items: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    # The response object as the API shows it (its `output`, `usage`, `status`...).
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class ResponseEvent(Base):
    """One stream event of a background response, by its sequence number (migration 0009)."""

    __tablename__ = "response_events"
    __table_args__ = (Index("ix_response_events_response_seq", "response_id", "sequence", unique=True),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(String(160), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), nullable=False)
    event: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


@dataclass(frozen=True)
class ResponseRow:
    id: str
    tenant_id: str | None
    created_by: str | None
    end_user: str | None
    created_at: datetime
    metadata: dict[str, str]
    model: str
    status: str
    background: bool
    previous_response_id: str | None
    job_id: str | None
    input_items: list[Any]
    body: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["tags"] = values.pop("metadata")
        return values

    @classmethod
    def of(cls, stored: StoredResponse) -> ResponseRow:
        return cls(
            id=stored.id,
            tenant_id=stored.tenant_id,
            created_by=stored.created_by,
            end_user=stored.end_user,
            created_at=stored.created_at,
            metadata=dict(stored.tags or {}),
            model=stored.model,
            status=stored.status,
            background=stored.background,
            previous_response_id=stored.previous_response_id,
            job_id=stored.job_id,
            input_items=list(stored.input_items),
            body=dict(stored.body),
        )


class ResponseStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def add(self, row: ResponseRow, session: AsyncSession | None = None) -> None:
        """Write `row`; with `session`, as part of the caller's transaction (committed by it)."""
        if session is not None:
            session.add(StoredResponse(**row.as_row()))
            return
        async with self.db.session() as own:
            own.add(StoredResponse(**row.as_row()))
            await own.commit()

    async def get(self, owner: Owner, response_id: str) -> ResponseRow | None:
        async with self.db.session() as session:
            table = StoredResponse
            found = await session.execute(select(table).where(owner.owns(table), table.id == response_id))
            stored = found.scalar_one_or_none()
            return ResponseRow.of(stored) if stored is not None else None

    async def get_any(self, response_id: str) -> ResponseRow | None:
        """A response by id alone (the background job's own, whatever its tenant)."""
        async with self.db.session() as session:
            found = await session.execute(select(StoredResponse).where(StoredResponse.id == response_id))
            stored = found.scalar_one_or_none()
            return ResponseRow.of(stored) if stored is not None else None

    async def delete(self, owner: Owner, response_id: str) -> bool:
        table = StoredResponse
        async with self.db.session() as session:
            result = await session.execute(
                delete(table)
                .where(owner.owns(table), table.id == response_id)
                .execution_options(synchronize_session=False)
            )
            await session.execute(delete(ResponseEvent).where(ResponseEvent.response_id == response_id))
            await session.commit()
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    async def finish(
        session: AsyncSession, response_id: str, status: str, body: dict[str, Any], *, running: bool = True
    ) -> bool:
        """Record the response's end in the caller's transaction: only while it is not final yet
        (a cancel that came first wins); False when it was."""
        table = StoredResponse
        statement = update(table).where(table.id == response_id)
        if running:
            statement = statement.where(table.status.not_in(FINAL))
        result = await session.execute(
            statement.values(status=status, body=body).execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def mark(self, response_id: str, status: str, body: dict[str, Any]) -> bool:
        async with self.db.session() as session:
            changed = await self.finish(session, response_id, status, body)
            await session.commit()
        return changed

    # Events of background responses ------------------------------------------------------------

    @staticmethod
    def add_events(session: AsyncSession, response_id: str, events: list[dict[str, Any]]) -> None:
        session.add_all(
            ResponseEvent(response_id=response_id, sequence=int(event["sequence_number"]), event=event)
            for event in events
        )

    async def events_after(self, response_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
        table = ResponseEvent
        async with self.db.session() as session:
            found = await session.execute(
                select(table.event)
                .where(table.response_id == response_id, table.sequence > after)
                .order_by(table.sequence)
                .limit(limit)
            )
            return [dict(event) for event in found.scalars()]

    async def status(self, response_id: str) -> str | None:
        async with self.db.session() as session:
            found = await session.execute(
                select(StoredResponse.status).where(StoredResponse.id == response_id)
            )
            return found.scalar_one_or_none()
