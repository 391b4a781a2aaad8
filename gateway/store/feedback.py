"""Feedback on stored answers (`POST /v1/feedback`, docs/fine-tuning.md): the table, and every read
and write scoped to the caller's tenant (`Owner`), except the admin API's listing across tenants.

A feedback row is an owned object (`OwnedColumns`: tenant, the key that wrote it, the end user,
metadata). It names what it rates (a stored chat completion, a stored response, or an item of a
conversation) and keeps a copy of the exchange as chat messages (`prompt`, `answer`): the export
turns feedback into training lines without the rated object, which may be deleted or expire, and
the erasure work finds the copy by its owner columns like any other stored object.

Another tenant's feedback is not found (None), exactly as feedback that never existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, String, Text, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import OwnedColumns, Owner, PageQuery, paged


class StoredFeedback(OwnedColumns, Base):
    """One piece of feedback (migration 0016)."""

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_tenant_time", "tenant_id", "created_at"),
        Index("ix_feedback_tenant_target", "tenant_id", "target_id"),
        Index("ix_feedback_tenant_prompt", "tenant_id", "prompt_hash"),
        Index("ix_feedback_created_by", "created_by"),
        Index("ix_feedback_end_user", "end_user"),
    )

    # chat.completion, response or conversation.item; the item's conversation in `conversation_id`.
    target_type: Mapped[str] = mapped_column(String(32), nullable=False)
    target_id: Mapped[str] = mapped_column(String(160), nullable=False)
    conversation_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    # The model that wrote the rated answer, when the target names it.
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # "up", "down" or "1".."5" as given; `score` the same on one scale, 0 (worst) to 1 (best).
    rating: Mapped[str | None] = mapped_column(String(8), nullable=True)
    score: Mapped[float | None] = mapped_column(Float(asdecimal=False), nullable=True)
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The answer the end user says should have been given.
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The exchange rated, as chat messages: what the model was given, and its answer (an assistant
    # message; None when the target is not one).
    prompt: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # SHA-256 of `prompt`: answers to the same prompt are compared (better versus worse).
    prompt_hash: Mapped[str] = mapped_column(String(64), nullable=False)


@dataclass(frozen=True)
class FeedbackFilter:
    """What a listing keeps: each field given must match."""

    tenant_id: str | None = None
    target_id: str | None = None
    target_type: str | None = None
    conversation_id: str | None = None
    rating: str | None = None
    label: str | None = None
    end_user: str | None = None
    created_after: datetime | None = None

    def apply(self, query: Any) -> Any:
        table = StoredFeedback
        pairs = (
            (table.tenant_id, self.tenant_id),
            (table.target_id, self.target_id),
            (table.target_type, self.target_type),
            (table.conversation_id, self.conversation_id),
            (table.rating, self.rating),
            (table.label, self.label),
            (table.end_user, self.end_user),
        )
        for column, value in pairs:
            if value is not None:
                query = query.where(column == value)
        if self.created_after is not None:
            query = query.where(table.created_at >= self.created_after)
        return query


class FeedbackStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def add(self, row: StoredFeedback) -> None:
        async with self.db.session() as session, session.begin():
            session.add(row)

    async def get(self, owner: Owner, feedback_id: str) -> StoredFeedback | None:
        table = StoredFeedback
        async with self.db.session() as session:
            found = await session.execute(select(table).where(owner.owns(table), table.id == feedback_id))
            return found.scalar_one_or_none()

    async def delete(self, owner: Owner, feedback_id: str) -> bool:
        table = StoredFeedback
        async with self.db.session() as session, session.begin():
            result = await session.execute(
                delete(table)
                .where(owner.owns(table), table.id == feedback_id)
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(result, "rowcount", 0))

    async def page(
        self, owner: Owner | None, query: PageQuery, where: FeedbackFilter = FeedbackFilter()
    ) -> tuple[list[StoredFeedback], bool]:
        """A page of the owner's feedback (every tenant's with `owner` None: the admin API's)."""
        table = StoredFeedback
        base = where.apply(select(table))
        mine = owner.owns(table) if owner is not None else None
        if mine is not None:
            base = base.where(mine)
        async with self.db.session() as session:
            cursor = None
            if query.after is not None:
                named = select(table.created_at, table.seq).where(table.id == query.after)
                found = (await session.execute(named if mine is None else named.where(mine))).first()
                if found is None:  # an id the owner has not: nothing comes after it
                    return [], False
                cursor = (found[0], found[1])
            rows = list((await session.execute(paged(base, table, cursor, query))).scalars())
        return rows[: query.limit], len(rows) > query.limit

    async def for_export(self, owner: Owner, where: FeedbackFilter, limit: int) -> list[StoredFeedback]:
        """The owner's feedback in the order it was given (at most `limit` rows)."""
        table = StoredFeedback
        query = where.apply(select(table).where(owner.owns(table))).order_by(table.seq).limit(limit)
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())
