"""What memory in chat recalled for each request (issue 19, point 7; migration 0022): the memories
the search returned with their scores, which of them were placed, and the exact text block placed
in the prompt with its token count. The panel's memory page reads it by request id.

A recall row names its tenant, the key and the end user (`end_user`): it is in the GDPR registry
(export, erasure) and has its own retention kind (`memory_recalls`). The placed block is stored as
the tenant's PII policy lets it be stored (redacted under `store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.memories import StoredMemory, StoredMemoryEvent
from gateway.store.models import Base
from gateway.store.owned import BigId, Owner


class StoredRecall(Base):
    """One chat request's memory recall (migration 0022)."""

    __tablename__ = "memory_recalls"
    __table_args__ = (
        Index("ix_memory_recalls_tenant_request", "tenant_id", "request_id"),
        Index("ix_memory_recalls_tenant_user", "tenant_id", "end_user"),
        Index("ix_memory_recalls_created_by", "created_by"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(160), nullable=False, unique=True)
    request_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    # [{"id", "score", "placed"}], best first: everything the search returned.
    found: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    prompt: Mapped[str] = mapped_column(Text, nullable=False, default="")
    tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


@dataclass(frozen=True)
class Recalled:
    """A recall as written and read: the request, its end user, what was found and what placed."""

    request_id: str
    end_user: str | None
    found: list[dict[str, Any]]
    prompt: str
    tokens: int
    created_at: datetime | None = None
    key_id: str | None = None


class RecallStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def record(self, owner: Owner, recall: Recalled, *, record_id: str, at: datetime) -> None:
        async with self.db.session() as session:
            session.add(
                StoredRecall(
                    id=record_id,
                    request_id=recall.request_id,
                    tenant_id=owner.tenant_id,
                    created_by=owner.key_id,
                    end_user=recall.end_user,
                    created_at=at,
                    found=recall.found,
                    prompt=recall.prompt,
                    tokens=recall.tokens,
                )
            )
            await session.commit()

    async def of_request(self, owner: Owner, request_id: str) -> Recalled | None:
        """The recall of one request of the owner's tenant (another tenant's: None)."""
        table = StoredRecall
        query = select(table).where(owner.owns(table), table.request_id == request_id)
        async with self.db.session() as session:
            row = (await session.execute(query.order_by(table.seq.desc()).limit(1))).scalar_one_or_none()
        return _recalled(row) if row is not None else None

    async def of_user(self, owner: Owner, end_user: str, limit: int = 20) -> list[Recalled]:
        """The end user's newest recalls in the owner's tenant."""
        table = StoredRecall
        query = select(table).where(owner.owns(table), table.end_user == end_user)
        async with self.db.session() as session:
            rows = (await session.execute(query.order_by(table.seq.desc()).limit(limit))).scalars().all()
        return [_recalled(row) for row in rows]

    async def histories(self, owner: Owner, memory_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The history of each of these memories of the owner's tenant, in one query, oldest first."""
        table = StoredMemoryEvent
        query = select(table).where(owner.owns(table), table.memory_id.in_(list(memory_ids)))
        found: dict[str, list[dict[str, Any]]] = {}
        async with self.db.session() as session:
            for row in (await session.execute(query.order_by(table.seq))).scalars().all():
                found.setdefault(row.memory_id, []).append(
                    {"event": row.event, "old": row.old_memory, "new": row.new_memory, "at": row.created_at}
                )
        return found

    async def writer_key(self, owner: Owner, user_id: str | None) -> str | None:
        """The key that wrote the end user's newest memory (the panel's search embeds as it)."""
        table = StoredMemory
        query = select(table.created_by).where(owner.owns(table), table.created_by.is_not(None))
        if user_id is not None:
            query = query.where(table.user_id == user_id)
        async with self.db.session() as session:
            return await session.scalar(query.order_by(table.seq.desc()).limit(1))


def _recalled(row: StoredRecall) -> Recalled:
    return Recalled(
        request_id=row.request_id,
        end_user=row.end_user,
        found=list(row.found or []),
        prompt=row.prompt,
        tokens=row.tokens,
        created_at=row.created_at,
        key_id=row.created_by,
    )
