"""Conversations (OpenAI's Conversations API) and their items: the tables, and every read and write
scoped to the caller's tenant (`Owner`).

A conversation is an owned object (`OwnedColumns`); its items are rows of their own, numbered in
the order they were added (`position`, from the conversation's `item_count`), each with the tenant,
the key that added it and the end user, so that retention and erasure can find them. Items are
written in the request, not batched: a client uses the conversation it just made at once, and the
Responses API reads a conversation and appends to it within one response.

Another tenant's conversation is not found (`ConversationNotFound`), exactly as one that never
existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, delete, select
from sqlalchemy import update as update_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import BigId, OwnedColumns, Owner


class ConversationNotFound(LookupError):
    """No such conversation for this owner (it never existed, was deleted, or is another tenant's)."""


class DuplicateItem(ValueError):
    """An item id the conversation already holds; `index` is the item's place in the batch."""

    def __init__(self, index: int, item_id: str) -> None:
        super().__init__(item_id)
        self.index = index
        self.item_id = item_id


class StoredConversation(OwnedColumns, Base):
    """One conversation (migration 0010)."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_tenant_time", "tenant_id", "created_at"),
        Index("ix_conversations_created_by", "created_by"),
        Index("ix_conversations_end_user", "end_user"),
    )

    # Items ever added: the next item's position (deleted items leave gaps).
    item_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class StoredItem(Base):
    """One item of a conversation, as it is shown (a Responses input item with its id)."""

    __tablename__ = "conversation_items"
    __table_args__ = (
        UniqueConstraint("conversation_seq", "item_id", name="uq_conversation_items_item"),
        UniqueConstraint("conversation_seq", "position", name="uq_conversation_items_position"),
        Index("ix_conversation_items_created_by", "created_by"),
        Index("ix_conversation_items_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("conversations.seq", ondelete="CASCADE"),
        nullable=False,
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    item_id: Mapped[str] = mapped_column(String(160), nullable=False)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


@dataclass(frozen=True)
class ConversationRow:
    id: str
    created_at: datetime
    metadata: dict[str, str]
    tenant_id: str | None
    created_by: str | None
    end_user: str | None

    @classmethod
    def of(cls, stored: StoredConversation) -> ConversationRow:
        return cls(
            id=stored.id,
            created_at=stored.created_at,
            metadata=dict(stored.tags or {}),
            tenant_id=stored.tenant_id,
            created_by=stored.created_by,
            end_user=stored.end_user,
        )


@dataclass(frozen=True)
class ItemPage:
    items: list[dict[str, Any]]
    has_more: bool


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def create(
        self,
        owner: Owner,
        conversation_id: str,
        *,
        at: datetime,
        metadata: dict[str, str],
        items: Sequence[dict[str, Any]] = (),
        end_user: str | None = None,
    ) -> ConversationRow:
        """A new conversation with its first `items` (normalised: each with `id` and `type`), in one
        transaction."""
        stored = StoredConversation(
            id=conversation_id,
            tenant_id=owner.tenant_id,
            created_by=owner.key_id,
            end_user=end_user,
            created_at=at,
            tags=metadata,
            item_count=len(items),
        )
        async with self.db.session() as session, session.begin():
            session.add(stored)
            await session.flush()
            session.add_all(_rows(stored.seq, 0, owner, end_user, at, items))
        return ConversationRow.of(stored)

    async def get(self, owner: Owner, conversation_id: str) -> ConversationRow:
        async with self.db.session() as session:
            return ConversationRow.of(await _conversation(session, owner, conversation_id))

    async def update_metadata(
        self, owner: Owner, conversation_id: str, metadata: dict[str, str]
    ) -> ConversationRow:
        async with self.db.session() as session, session.begin():
            stored = await _conversation(session, owner, conversation_id)
            stored.tags = metadata
        return ConversationRow.of(stored)

    async def delete(self, owner: Owner, conversation_id: str) -> None:
        """The conversation and its items (the items first: SQLite and PostgreSQL alike)."""
        async with self.db.session() as session, session.begin():
            stored = await _conversation(session, owner, conversation_id)
            await session.execute(delete(StoredItem).where(StoredItem.conversation_seq == stored.seq))
            await session.delete(stored)

    async def append(
        self,
        owner: Owner,
        conversation_id: str,
        items: Sequence[dict[str, Any]],
        *,
        at: datetime,
        end_user: str | None = None,
    ) -> None:
        """Add `items` (normalised: each with `id` and `type`) after the conversation's last, in one
        transaction: all of them or none. The conversation's row is written first (its item count),
        which serialises concurrent appends to one conversation on PostgreSQL (the row lock) and on
        SQLite (the write lock). `DuplicateItem` for an id the conversation already holds; the items'
        end user is the conversation's unless one is given."""
        table = StoredConversation
        async with self.db.session() as session, session.begin():
            claimed = await session.execute(
                update_(table)
                .where(owner.owns(table), table.id == conversation_id)
                .values(item_count=table.item_count + len(items))
                .returning(table.seq, table.item_count, table.end_user)
                .execution_options(synchronize_session=False)
            )
            found = claimed.first()
            if found is None:
                raise ConversationNotFound(conversation_id)
            seq, count, owner_user = found
            ids = [item["id"] for item in items]
            taken = await session.execute(
                select(StoredItem.item_id).where(
                    StoredItem.conversation_seq == seq, StoredItem.item_id.in_(ids)
                )
            )
            clash = set(taken.scalars())
            if clash:
                index = next(i for i, item_id in enumerate(ids) if item_id in clash)
                raise DuplicateItem(index, ids[index])
            user = end_user if end_user is not None else owner_user
            session.add_all(_rows(seq, count - len(items), owner, user, at, items))

    async def items(
        self,
        owner: Owner,
        conversation_id: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        order: Literal["asc", "desc"] = "asc",
    ) -> ItemPage:
        """The conversation's items in `order` of addition, after the item `after` (an id it does not
        hold: an empty page), at most `limit` (None: all)."""
        async with self.db.session() as session:
            conversation = await _conversation(session, owner, conversation_id)
            query = select(StoredItem.body).where(StoredItem.conversation_seq == conversation.seq)
            if after is not None:
                position = await _position(session, conversation.seq, after)
                if position is None:
                    return ItemPage([], False)
                query = query.where(
                    StoredItem.position > position if order == "asc" else StoredItem.position < position
                )
            ordering = StoredItem.position.asc() if order == "asc" else StoredItem.position.desc()
            query = query.order_by(ordering)
            if limit is not None:
                query = query.limit(limit + 1)
            bodies = [dict(body) for body in (await session.execute(query)).scalars()]
        if limit is not None and len(bodies) > limit:
            return ItemPage(bodies[:limit], True)
        return ItemPage(bodies, False)

    async def item(self, owner: Owner, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        async with self.db.session() as session:
            conversation = await _conversation(session, owner, conversation_id)
            found = await session.execute(
                select(StoredItem.body).where(
                    StoredItem.conversation_seq == conversation.seq, StoredItem.item_id == item_id
                )
            )
            body = found.scalar_one_or_none()
            return dict(body) if body is not None else None

    async def delete_item(self, owner: Owner, conversation_id: str, item_id: str) -> ConversationRow | None:
        """Delete one item; the conversation, or None when it holds no such item."""
        async with self.db.session() as session, session.begin():
            conversation = await _conversation(session, owner, conversation_id)
            result = await session.execute(
                delete(StoredItem)
                .where(StoredItem.conversation_seq == conversation.seq, StoredItem.item_id == item_id)
                .execution_options(synchronize_session=False)
            )
            if not getattr(result, "rowcount", 0):
                return None
        return ConversationRow.of(conversation)


async def _conversation(session: AsyncSession, owner: Owner, conversation_id: str) -> StoredConversation:
    table = StoredConversation
    found = await session.execute(select(table).where(owner.owns(table), table.id == conversation_id))
    stored: StoredConversation | None = found.scalar_one_or_none()
    if stored is None:
        raise ConversationNotFound(conversation_id)
    return stored


async def _position(session: AsyncSession, conversation_seq: int, item_id: str) -> int | None:
    found = await session.execute(
        select(StoredItem.position).where(
            StoredItem.conversation_seq == conversation_seq, StoredItem.item_id == item_id
        )
    )
    position: int | None = found.scalar_one_or_none()
    return position


def _rows(
    conversation_seq: int,
    first: int,
    owner: Owner,
    end_user: str | None,
    at: datetime,
    items: Sequence[dict[str, Any]],
) -> list[StoredItem]:
    return [
        StoredItem(
            conversation_seq=conversation_seq,
            position=first + index,
            item_id=item["id"],
            type=item["type"],
            tenant_id=owner.tenant_id,
            created_by=owner.key_id,
            end_user=end_user,
            created_at=at,
            body=item,
        )
        for index, item in enumerate(items)
    ]
