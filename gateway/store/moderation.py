"""Moderation's tables (migration 0013): each tenant's policy (one JSON object, written by the
admin API), and the flags moderation raised, each with its tenant, the key that made the request
(`created_by`) and the end user (`end_user`, the request's `user`), for review, export and erasure.

Flags are written in the request that raised them (a few per flagged request, never per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import BigId
from gateway.store.records import AuditContext
from gateway.store.tenant_policy import read_policy, write_policy


class StoredPolicy(Base):
    __tablename__ = "moderation_policies"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class StoredFlag(Base):
    __tablename__ = "moderation_flags"
    __table_args__ = (
        Index("ix_moderation_flags_tenant_time", "tenant_id", "created_at"),
        Index("ix_moderation_flags_created_by", "created_by"),
        Index("ix_moderation_flags_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(160), nullable=False, unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(100), nullable=False)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # input (the prompt, before the model), output (the answer), or request (/v1/moderations).
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    # blocked (400), cut (the answer withheld or the stream ended), flagged (let through, recorded).
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    categories: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    scores: Mapped[dict[str, float]] = mapped_column(JSON, nullable=False)
    excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)


@dataclass(frozen=True)
class Flag:
    id: str
    tenant_id: str | None
    created_by: str | None
    end_user: str | None
    created_at: datetime
    request_id: str | None
    endpoint: str
    model: str | None
    stage: str
    action: str
    categories: list[str]
    scores: dict[str, float]
    excerpt: str | None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "moderation.flag",
            "tenant_id": self.tenant_id,
            "key_id": self.created_by,
            "user": self.end_user,
            "created_at": int(self.created_at.timestamp()),
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "stage": self.stage,
            "action": self.action,
            "categories": self.categories,
            "category_scores": self.scores,
            "excerpt": self.excerpt,
        }


class ModerationStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def policy(self, tenant_id: str) -> dict[str, Any] | None:
        return await read_policy(self.db, StoredPolicy, tenant_id)

    async def set_policy(
        self, tenant_id: str, policy: dict[str, Any] | None, *, at: datetime, audit: AuditContext
    ) -> None:
        """`policy` for the tenant, audited; None removes it (the operator's default applies again)."""
        await write_policy(self.db, StoredPolicy, "moderation_policy", tenant_id, policy, at=at, audit=audit)

    async def add_flag(self, flag: Flag) -> None:
        async with self.db.session() as session, session.begin():
            session.add(StoredFlag(**flag.__dict__))

    async def flags(
        self, *, tenant_id: str | None = None, end_user: str | None = None, limit: int = 100
    ) -> list[Flag]:
        """The newest flags first, of one tenant or end user when named."""
        query = select(StoredFlag).order_by(StoredFlag.created_at.desc(), StoredFlag.seq.desc()).limit(limit)
        if tenant_id is not None:
            query = query.where(StoredFlag.tenant_id == tenant_id)
        if end_user is not None:
            query = query.where(StoredFlag.end_user == end_user)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [Flag(**{name: getattr(row, name) for name in Flag.__dataclass_fields__}) for row in rows]
