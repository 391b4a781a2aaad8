"""Memories (the memory API, docs/memory.md) and their history: the tables, and every read and write
scoped to the caller's tenant (`Owner`).

A memory is an owned object (`OwnedColumns`: tenant, the key that made it, the end user, metadata)
with mem0's scope (`user_id`, `agent_id`, `app_id`, `run_id`), its text, and its embedding (float32
bytes: the vector index is rebuilt from these when its files are lost, and a later backend migration
copies them). Every change is a `memory_history` row (ADD, UPDATE, DELETE, MERGE) with the text before and
after, kept after the memory is deleted, with the same owner columns for erasure.

Another tenant's memory is not found (None), exactly as one that never existed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, Index, LargeBinary, Select, String, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.memory_events import Event, Expiry, expiry_change
from gateway.store.models import Base
from gateway.store.owned import BigId, OwnedColumns, Owner

ENTITIES = ("user_id", "agent_id", "app_id", "run_id")
# The changes that remove a memory's row (its history is kept).
_REMOVING = ("DELETE", "MERGE")
# Told, after a write commits, the tenant and the end users (user_id, None for none) whose memories
# it changed: what the scope cache's versions are bumped by (gateway/memory/scope_cache.py).
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])
Written = Callable[[str | None, set[str | None]], Awaitable[None]]


class StoredMemory(OwnedColumns, Base):
    """One memory (migration 0015)."""

    __tablename__ = "memories"
    __table_args__ = (
        # With expires_at (migration 0025): a search's row numbers are read from the index alone.
        Index("ix_memories_tenant_user", "tenant_id", "user_id", "expires_at"),
        Index("ix_memories_tenant_agent", "tenant_id", "agent_id", "expires_at"),
        Index("ix_memories_tenant_run", "tenant_id", "run_id", "expires_at"),
        Index("ix_memories_created_by", "created_by"),
        Index("ix_memories_end_user", "end_user"),
    )

    user_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    app_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    memory: Mapped[str] = mapped_column(Text, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    categories: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # Migration 0023: search skips the memory after this, the compression job removes it.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)


class StoredMemoryEvent(Base):
    """One change of a memory, kept after the memory is deleted."""

    __tablename__ = "memory_history"
    __table_args__ = (
        Index("ix_memory_history_memory", "tenant_id", "memory_id"),
        Index("ix_memory_history_created_by", "created_by"),
        Index("ix_memory_history_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(160), nullable=False, unique=True)
    memory_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    event: Mapped[str] = mapped_column(String(16), nullable=False)
    old_memory: Mapped[str | None] = mapped_column(Text, nullable=True)
    new_memory: Mapped[str | None] = mapped_column(Text, nullable=True)
    input: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


@dataclass(frozen=True)
class Scope:
    """mem0's entity ids a memory belongs to, or a search is limited to (None: any), and metadata
    every match must carry (equality on each key)."""

    user_id: str | None = None
    agent_id: str | None = None
    app_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in ENTITIES)

    def ids(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ENTITIES}

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether a memory's metadata carries every key of this scope's, equal."""
        return all(metadata.get(k) == v for k, v in self.metadata.items())


@dataclass(frozen=True)
class Memory:
    seq: int
    id: str
    memory: str
    hash: str
    scope: Scope
    metadata: dict[str, Any]
    categories: list[str]
    created_at: datetime
    updated_at: datetime
    vector: bytes
    expires_at: datetime | None = None
    created_by: str | None = None  # the key that made it (what the compression job acts as)
    tenant_id: str | None = None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    @classmethod
    def of(cls, row: StoredMemory) -> Memory:
        return cls(
            seq=row.seq,
            id=row.id,
            memory=row.memory,
            hash=row.hash,
            scope=Scope(row.user_id, row.agent_id, row.app_id, row.run_id),
            metadata=dict(row.tags or {}),
            categories=list(row.categories or []),
            created_at=row.created_at,
            updated_at=row.updated_at,
            vector=row.vector,
            expires_at=row.expires_at,
            created_by=row.created_by,
            tenant_id=row.tenant_id,
        )


@dataclass(frozen=True)
class Change:
    """One write of `MemoryStore.apply`: a new memory (`id` new), new text or metadata for one
    (`old` given), its deletion, or its merge into another (MERGE: the row goes, its history's
    `new_memory` is the text it was merged into, `text`)."""

    event: str  # ADD, UPDATE, DELETE, MERGE
    id: str
    history_id: str
    text: str | None = None
    vector: bytes | None = None
    metadata: dict[str, Any] | None = None
    scope: Scope = field(default_factory=Scope)
    input: list[dict[str, Any]] | None = None
    expires_at: datetime | None = None
    expiry: Expiry | None = None  # an UPDATE's new expiry (memory_events.py); None: unchanged


def text_hash(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class MemoryStore:
    def __init__(self, database: Database, written: Written | None = None) -> None:
        self.db = database
        self.written = written

    async def get(self, owner: Owner, memory_id: str) -> Memory | None:
        async with self.db.session() as session:
            row = await _memory(session, owner, memory_id)
            return Memory.of(row) if row is not None else None

    async def in_scope(self, owner: Owner, scope: Scope) -> list[Memory]:
        """Every memory of the owner in `scope`, oldest first (metadata matched here, in Python:
        JSON equality is not portable between SQLite and PostgreSQL)."""
        table = StoredMemory
        query = _scoped(select(table).where(owner.owns(table)), scope, None)
        async with self.db.session() as session:
            rows = (await session.execute(query.order_by(table.seq))).scalars().all()
        found = [Memory.of(row) for row in rows]
        return [m for m in found if scope.matches(m.metadata)] if scope.metadata else found

    async def named_in_scope(
        self, owner: Owner, scope: Scope, ids: Collection[str], *, live_at: datetime | None
    ) -> dict[str, Memory]:
        """Those of the memories `ids` that are the owner's and in `scope` (unexpired at `live_at`),
        by id: what the knowledge graph reached, checked without reading the scope's other rows."""
        if not ids:
            return {}
        table = StoredMemory
        query = _scoped(select(table).where(owner.owns(table), table.id.in_(list(ids))), scope, live_at)
        async with self.db.session() as session:
            rows = (await session.execute(query)).scalars().all()
        found = [Memory.of(row) for row in rows]
        return {m.id: m for m in found if scope.matches(m.metadata)}

    async def seqs_in_scope(self, owner: Owner, scope: Scope, *, live_at: datetime | None) -> list[int]:
        """The row numbers of the owner's memories in a scope without metadata (unexpired at
        `live_at`; None: all): what a search is limited to, read without the rows themselves (a
        user's 10k memories carry 15 MB of vectors; their row numbers, 80 kB)."""
        assert not scope.metadata, "metadata is matched on the rows: use in_scope"
        table = StoredMemory
        query = _scoped(select(table.seq).where(owner.owns(table)), scope, live_at)
        async with self.db.session() as session:
            return list(await session.scalars(query))

    async def scope_rows(self, owner: Owner, scope: Scope) -> list[tuple[int, datetime | None]]:
        """(row number, expiry) of every memory of the owner in a scope without metadata, expired
        ones too (read from the index alone, as `seqs_in_scope`): what the scope cache keeps, so
        that expiry is applied when it is read."""
        assert not scope.metadata, "metadata is matched on the rows: use in_scope"
        table = StoredMemory
        rows = select(table.seq, table.expires_at).where(owner.owns(table))
        query = _scoped(rows, scope, None)
        async with self.db.session() as session:
            return [(seq, expires) for seq, expires in (await session.execute(query)).tuples()]

    async def by_seqs(self, owner: Owner, seqs: Sequence[int]) -> dict[int, Memory]:
        """The owner's memories with these row numbers (a search's hits), by row number."""
        if not seqs:
            return {}
        table = StoredMemory
        query = select(table).where(owner.owns(table), table.seq.in_(list(seqs)))
        async with self.db.session() as session:
            rows = (await session.execute(query)).scalars().all()
        return {row.seq: Memory.of(row) for row in rows}

    async def vectors(self, tenant_id: str | None) -> dict[int, bytes]:
        """Every memory vector of a tenant by row number: what an index is rebuilt from."""
        table = StoredMemory
        owner = Owner(tenant_id)
        async with self.db.session() as session:
            rows = await session.execute(select(table.seq, table.vector).where(owner.owns(table)))
            return {seq: vector for seq, vector in rows.tuples()}

    async def tenants(self) -> list[str | None]:
        """Every tenant holding a memory (what `python -m gateway memory copy` walks)."""
        async with self.db.session() as session:
            return list(await session.scalars(select(StoredMemory.tenant_id).distinct()))

    async def count(self, tenant_id: str | None) -> int:
        table = StoredMemory
        async with self.db.session() as session:
            found = await session.scalar(
                select(func.count()).select_from(table).where(Owner(tenant_id).owns(table))
            )
            return int(found or 0)

    async def expired(self, now: datetime, limit: int = 500) -> list[Memory]:
        """Memories of any tenant past their `expires_at`, oldest expiry first."""
        table = StoredMemory
        query = select(table).where(table.expires_at.is_not(None), table.expires_at <= now)
        async with self.db.session() as session:
            rows = (await session.execute(query.order_by(table.expires_at).limit(limit))).scalars().all()
        return [Memory.of(row) for row in rows]

    async def over_budget(self, budget: int) -> list[tuple[str | None, str, int]]:
        """(tenant, user_id, count) of every end user holding more than `budget` memories."""
        table = StoredMemory
        count = func.count()
        query = (
            select(table.tenant_id, table.user_id, count)
            .where(table.user_id.is_not(None))
            .group_by(table.tenant_id, table.user_id)
            .having(count > budget)
        )
        async with self.db.session() as session:
            rows = (await session.execute(query)).tuples().all()
        return [(tenant, str(user), int(n)) for tenant, user, n in rows]

    async def apply(self, owner: Owner, changes: Sequence[Change], *, at: datetime) -> list[Memory | None]:
        """The changes and their history rows in one transaction; each change's memory after it
        (None for a DELETE, or for an UPDATE/DELETE of a memory the owner has not)."""
        done: list[Memory | None] = []
        users: set[str | None] = set()
        async with self.db.session() as session, session.begin():
            for change in changes:
                done.append(await _apply(session, owner, change, at, users))
        if self.written is not None and users:
            await self.written(owner.tenant_id, users)
        return done

    async def history(self, owner: Owner, memory_id: str) -> list[Event]:
        table = StoredMemoryEvent
        query = select(table).where(owner.owns(table), table.memory_id == memory_id).order_by(table.seq)
        async with self.db.session() as session:
            rows = (await session.execute(query)).scalars().all()
        return [Event.of(row) for row in rows]


def _scoped(query: _Query, scope: Scope, live_at: datetime | None) -> _Query:
    """`query` limited to the scope's entity ids and, with `live_at`, to memories unexpired then
    (migration 0025's indexes cover these columns: the row numbers are read from the index alone)."""
    table = StoredMemory
    for name, value in scope.ids().items():
        if value is not None:
            query = query.where(getattr(table, name) == value)
    if live_at is not None:
        query = query.where(table.expires_at.is_(None) | (table.expires_at > live_at))
    return query


async def _memory(session: AsyncSession, owner: Owner, memory_id: str) -> StoredMemory | None:
    table = StoredMemory
    found = await session.execute(select(table).where(owner.owns(table), table.id == memory_id))
    return found.scalar_one_or_none()


async def _apply(
    session: AsyncSession, owner: Owner, change: Change, at: datetime, users: set[str | None]
) -> Memory | None:
    """One change in the session; the end user of the memory it changed is added to `users`."""
    old: str | None = None
    expired: dict[str, str | None] = {}  # an UPDATE's expiry, before and after, for its history
    if change.event == "ADD":
        assert change.text is not None and change.vector is not None
        scope = change.scope
        row = StoredMemory(
            id=change.id,
            tenant_id=owner.tenant_id,
            created_by=owner.key_id,
            end_user=scope.user_id,
            created_at=at,
            updated_at=at,
            tags=change.metadata or {},
            memory=change.text,
            hash=text_hash(change.text),
            categories=[],
            vector=change.vector,
            expires_at=change.expires_at,
            **scope.ids(),
        )
        session.add(row)
        await session.flush()
    else:
        found = await _memory(session, owner, change.id)
        if found is None:
            return None
        row, old = found, found.memory
        if change.event in _REMOVING:
            await session.execute(delete(StoredMemory).where(StoredMemory.seq == row.seq))
        else:
            if change.expires_at is not None:
                row.expires_at = change.expires_at
            if change.expiry is not None:
                expired, row.expires_at = expiry_change(row.expires_at, change.expiry.at), change.expiry.at
            if change.text is not None and change.vector is not None:
                row.memory, row.hash, row.vector = change.text, text_hash(change.text), change.vector
            if change.metadata is not None:
                row.tags = change.metadata
            row.updated_at = at
    users.add(row.user_id)
    session.add(
        StoredMemoryEvent(
            id=change.history_id,
            memory_id=change.id,
            tenant_id=owner.tenant_id,
            created_by=owner.key_id,
            end_user=row.user_id,
            event=change.event,
            old_memory=old,
            new_memory=change.text if change.event in _REMOVING else row.memory,
            input=change.input,
            tags={**(row.tags or {}), **((change.metadata or {}) if change.event in _REMOVING else expired)},
            created_at=at,
        )
    )
    return None if change.event in _REMOVING else Memory.of(row)
