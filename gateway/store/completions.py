"""Stored chat completions (`store: true`): the table, the plain record the store hands out, and
its reads and writes, every read scoped to the caller's tenant (`Owner`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, defer, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import OwnedColumns, Owner, PageQuery, paged


class StoredCompletion(OwnedColumns, Base):
    """One chat completion created with `store: true` (migration 0007)."""

    __tablename__ = "stored_completions"
    __table_args__ = (
        Index("ix_stored_completions_tenant_time", "tenant_id", "created_at"),
        Index("ix_stored_completions_created_by", "created_by"),
        Index("ix_stored_completions_end_user", "end_user"),
    )

    # The model that answered, as the answer named it; `created` is the answer's own timestamp.
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    created: Mapped[int] = mapped_column(Integer, nullable=False)
    # The gateway's request id (the ledger row's), to find the one from the other.
    request_id: Mapped[str] = mapped_column(String(160), nullable=False)
    # The request's messages as the client sent them.
    messages: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    choices: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The object's other fields: the request's parameters OpenAI echoes (temperature, tools, seed...)
    # and the answer's (system_fingerprint, service_tier).
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


@dataclass(frozen=True)
class StoredCompletionRow:
    """A stored completion as a plain value: what is written, and what is read back (`messages`
    empty when a list read left them out)."""

    id: str
    model: str
    created: int
    created_at: datetime
    request_id: str
    tenant_id: str | None
    created_by: str | None
    end_user: str | None
    metadata: dict[str, str]
    messages: list[Any]
    choices: list[Any]
    usage: dict[str, Any] | None
    fields: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["tags"] = values.pop("metadata")
        return values

    @classmethod
    def of(cls, stored: StoredCompletion, *, messages: bool = True) -> StoredCompletionRow:
        return cls(
            id=stored.id,
            model=stored.model,
            created=stored.created,
            created_at=stored.created_at,
            request_id=stored.request_id,
            tenant_id=stored.tenant_id,
            created_by=stored.created_by,
            end_user=stored.end_user,
            metadata=dict(stored.tags or {}),
            messages=list(stored.messages) if messages else [],
            choices=list(stored.choices),
            usage=stored.usage,
            fields=dict(stored.fields or {}),
        )


@dataclass(frozen=True)
class Page:
    rows: list[StoredCompletionRow]
    has_more: bool


class CompletionStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def add(self, rows: Sequence[StoredCompletionRow]) -> None:
        """Write `rows`; one whose id is already stored (a batch retried after a commit whose answer
        was lost) is skipped."""
        if not rows:
            return
        dialect = postgresql if self.db.url.get_backend_name() == "postgresql" else sqlite
        insert = dialect.insert(StoredCompletion).on_conflict_do_nothing(index_elements=["id"])
        async with self.db.session() as session:
            await session.execute(insert, [row.as_row() for row in rows])
            await session.commit()

    async def get(self, owner: Owner, completion_id: str) -> StoredCompletionRow | None:
        async with self.db.session() as session:
            stored = await self._find(session, owner, completion_id)
            return StoredCompletionRow.of(stored) if stored is not None else None

    async def list(
        self,
        owner: Owner,
        query: PageQuery,
        *,
        model: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Page:
        """The owner's completions, filtered by model and by metadata pairs (all must match)."""
        table = StoredCompletion
        base = select(table).where(owner.owns(table)).options(defer(table.messages))
        if model is not None:
            base = base.where(table.model == model)
        for key, value in (metadata or {}).items():
            base = base.where(table.tags[key].as_string() == value)
        async with self.db.session() as session:
            cursor = None
            if query.after is not None:
                found = await session.execute(
                    select(table.created_at, table.seq).where(owner.owns(table), table.id == query.after)
                )
                row = found.first()
                if row is None:  # an id the owner has not (or no longer): nothing comes after it
                    return Page([], False)
                cursor = (row[0], row[1])
            stored = list((await session.execute(paged(base, table, cursor, query))).scalars())
        rows = [StoredCompletionRow.of(item, messages=False) for item in stored[: query.limit]]
        return Page(rows, len(stored) > query.limit)

    async def update_metadata(
        self, owner: Owner, completion_id: str, metadata: dict[str, str]
    ) -> StoredCompletionRow | None:
        """Replace the completion's metadata; None when the owner has no such completion."""
        table = StoredCompletion
        async with self.db.session() as session:
            result = await session.execute(
                update(table)
                .where(owner.owns(table), table.id == completion_id)
                .values(tags=metadata)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
            if not getattr(result, "rowcount", 0):
                return None
            stored = await self._find(session, owner, completion_id)
            return StoredCompletionRow.of(stored) if stored is not None else None

    async def delete(self, owner: Owner, completion_id: str) -> bool:
        table = StoredCompletion
        async with self.db.session() as session:
            result = await session.execute(
                delete(table)
                .where(owner.owns(table), table.id == completion_id)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    async def _find(session: Any, owner: Owner, completion_id: str) -> StoredCompletion | None:
        table = StoredCompletion
        found = await session.execute(select(table).where(owner.owns(table), table.id == completion_id))
        stored: StoredCompletion | None = found.scalar_one_or_none()
        return stored
