"""What every object the stateful APIs keep carries (stored chat completions; responses,
conversations and files follow the same shape), and the one way such objects are read: scoped to
the caller's tenant, listed as OpenAI pages its lists (`after`, `limit`, `order`, `has_more`).

An object belongs to a tenant (OpenAI's project): any key of the tenant may read it, another
tenant's key finds nothing (a 404 at the API, never a 403 that would confirm it exists). The key
that made it (`created_by`) and the end user it was made for (`end_user`, OpenAI's `user`) are
kept so that the governance work can erase by key or by user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, ColumnElement, DateTime, Integer, Select, String, and_, or_
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGSERIAL.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Order = Literal["asc", "desc"]


class OwnedColumns:
    """The columns of an owned object: a row number (the tie-breaker of its order), its public id,
    its owner, who made it, for whom, when, and its `metadata` (OpenAI's 16 string pairs)."""

    @declared_attr
    def seq(cls) -> Mapped[int]:
        return mapped_column(BigId, primary_key=True, autoincrement=True)

    @declared_attr
    def id(cls) -> Mapped[str]:
        return mapped_column(String(160), nullable=False, unique=True)

    @declared_attr
    def tenant_id(cls) -> Mapped[str | None]:
        # NULL with auth off: every caller is the same anonymous owner.
        return mapped_column(String(40), nullable=True)

    @declared_attr
    def created_by(cls) -> Mapped[str | None]:
        return mapped_column(String(40), nullable=True)

    @declared_attr
    def end_user(cls) -> Mapped[str | None]:
        return mapped_column(String(256), nullable=True)

    @declared_attr
    def created_at(cls) -> Mapped[datetime]:
        # Naive UTC with microseconds: the list order, with `seq` for ties.
        return mapped_column(DateTime, nullable=False)

    @declared_attr
    def tags(cls) -> Mapped[dict[str, str]]:
        # `metadata` is SQLAlchemy's own attribute name; the column is still called metadata.
        return mapped_column("metadata", JSON, nullable=False, default=dict)


@dataclass(frozen=True)
class Owner:
    """Who asks: the tenant whose objects it may see, and the key asking (recorded as creator)."""

    tenant_id: str | None
    key_id: str | None = None

    def owns(self, table: Any) -> ColumnElement[bool]:
        column = table.tenant_id
        return column.is_(None) if self.tenant_id is None else column == self.tenant_id


@dataclass(frozen=True)
class PageQuery:
    """OpenAI's list parameters: objects after the one named `after`, at most `limit`, in `order`
    of creation."""

    after: str | None = None
    limit: int = 20
    order: Order = "asc"  # OpenAI's default for its stored objects


def paged(
    select: Select[Any], table: Any, cursor: tuple[datetime, int] | None, query: PageQuery
) -> Select[Any]:
    """`select` ordered by creation (row number for ties), after `cursor` (the `after` object's
    creation time and row number), one more than `limit` (to know whether there are more)."""
    created, seq = table.created_at, table.seq
    if cursor is not None:
        at, number = cursor
        if query.order == "asc":
            select = select.where(or_(created > at, and_(created == at, seq > number)))
        else:
            select = select.where(or_(created < at, and_(created == at, seq < number)))
    ordering = (created.asc(), seq.asc()) if query.order == "asc" else (created.desc(), seq.desc())
    return select.order_by(*ordering).limit(query.limit + 1)
