"""Read-only views of the stored objects for the admin panel (issue 21, point 2): files, batches,
stored responses, fine-tuning jobs, moderation flags and stored chat completions, listed across
tenants (or within one) with filters, newest first, and read one by one.

One generic reader over the kinds' tables, not one per API: the APIs' own stores read as an
OpenAI client does (one tenant, the OpenAI cursor); an operator's view filters by tenant, end user,
status and day, and pages by keyset (`before`: the last row's id), so a page costs the same at
row 100 as at row 100,000 (the tables' `tenant_id, created_at` indexes).

A detail shows each column's value; what an object holds for its end user (messages, answers, a
response's items) is shown by size only: reading it is the GDPR export's job, with its audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, inspect, or_, select

from gateway.store.batches import Batch
from gateway.store.completions import StoredCompletion
from gateway.store.database import Database
from gateway.store.file_models import StoredFile
from gateway.store.fine_tuning import FineTuningJobRow
from gateway.store.moderation import StoredFlag
from gateway.store.responses import StoredResponse


@dataclass(frozen=True)
class Kind:
    """A kind of stored object: its table, the columns its list shows, which column names the end
    user and the status, what other objects its columns name (column: kind), and what is shown by
    size only."""

    name: str
    title: str
    table: Any
    columns: tuple[str, ...]
    user_column: str = "end_user"
    status_column: str | None = "status"
    statuses: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)
    sized: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "files",
            "Files",
            StoredFile,
            ("filename", "purpose", "bytes", "status", "expires_at"),
            user_column="user",
            statuses=("uploaded", "processed", "error"),
            hidden=("blob_key",),
        ),
        Kind(
            "batches",
            "Batches",
            Batch,
            ("endpoint", "status", "total", "completed", "failed", "input_file_id"),
            statuses=(
                "validating",
                "failed",
                "in_progress",
                "finalizing",
                "completed",
                "expired",
                "cancelling",
                "cancelled",
            ),
            links={"input_file_id": "files", "output_file_id": "files", "error_file_id": "files"},
            sized=("errors",),
        ),
        Kind(
            "responses",
            "Stored responses",
            StoredResponse,
            ("model", "status", "background", "previous_response_id"),
            statuses=("queued", "in_progress", "completed", "incomplete", "failed", "cancelled"),
            links={"previous_response_id": "responses"},
            sized=("input_items", "body"),
        ),
        Kind(
            "fine_tuning",
            "Fine-tuning jobs",
            FineTuningJobRow,
            ("model", "status", "training_file", "fine_tuned_model", "trained_tokens"),
            statuses=("validating_files", "queued", "running", "succeeded", "failed", "cancelled"),
            links={"training_file": "files", "validation_file": "files"},
            hidden=("adapter_key",),
        ),
        Kind(
            "moderation_flags",
            "Moderation flags",
            StoredFlag,
            ("endpoint", "stage", "action", "categories", "model"),
            status_column="action",
            statuses=("blocked", "cut", "flagged"),
            sized=("excerpt",),
        ),
        Kind(
            "completions",
            "Stored chat completions",
            StoredCompletion,
            ("model", "request_id"),
            status_column=None,
            sized=("messages", "choices"),
        ),
    )
}


@dataclass(frozen=True)
class Filters:
    """`tenant_id` None: every tenant (an owner's or operator's view)."""

    tenant_id: str | None = None
    end_user: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    before: str | None = None  # the id of the last row of the page before
    limit: int = 50


@dataclass(frozen=True)
class Listing:
    rows: list[dict[str, Any]]
    next_before: str | None


class ObjectBrowser:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def page(self, kind: Kind, filters: Filters) -> Listing:
        table = kind.table
        query = select(table).where(*self._where(kind, filters))
        async with self.db.session() as session:
            if filters.before is not None:
                found = await session.execute(
                    select(table.created_at, table.id).where(table.id == filters.before)
                )
                cursor = found.first()
                if cursor is None:
                    return Listing([], None)
                at, last = cursor
                query = query.where(or_(table.created_at < at, and_(table.created_at == at, table.id < last)))
            query = query.order_by(table.created_at.desc(), table.id.desc()).limit(filters.limit + 1)
            rows = list((await session.execute(query)).scalars())
        more = len(rows) > filters.limit
        shown = [self.summary(kind, row) for row in rows[: filters.limit]]
        return Listing(shown, shown[-1]["id"] if more and shown else None)

    async def get(self, kind: Kind, object_id: str, tenant_id: str | None) -> dict[str, Any] | None:
        """One object, or None when it does not exist or is not `tenant_id`'s (None: any tenant's)."""
        table = kind.table
        query = select(table).where(table.id == object_id)
        if tenant_id is not None:
            query = query.where(table.tenant_id == tenant_id)
        async with self.db.session() as session:
            row = (await session.execute(query)).scalar_one_or_none()
        return None if row is None else self.detail(kind, row)

    @staticmethod
    def _where(kind: Kind, filters: Filters) -> list[Any]:
        table = kind.table
        where: list[Any] = []
        if filters.tenant_id is not None:
            where.append(table.tenant_id == filters.tenant_id)
        if filters.end_user:
            where.append(getattr(table, kind.user_column) == filters.end_user)
        if filters.status and kind.status_column is not None:
            where.append(getattr(table, kind.status_column) == filters.status)
        if filters.since is not None:
            where.append(table.created_at >= filters.since)
        if filters.until is not None:
            where.append(table.created_at < filters.until)
        return where

    @staticmethod
    def summary(kind: Kind, row: Any) -> dict[str, Any]:
        base = {
            "id": row.id,
            "tenant_id": row.tenant_id,
            "end_user": getattr(row, kind.user_column),
            "created_at": row.created_at,
        }
        return base | {name: getattr(row, name) for name in kind.columns}

    @staticmethod
    def detail(kind: Kind, row: Any) -> dict[str, Any]:
        """Every column by its attribute name; the personal content by its size in bytes of JSON."""
        values: dict[str, Any] = {}
        for attribute in inspect(kind.table).column_attrs:
            name = "metadata" if attribute.key == "tags" else attribute.key
            if name in kind.hidden or name == "seq":
                continue
            value = getattr(row, attribute.key)
            if name in kind.sized:
                value = f"{len(orjson.dumps(value)) if value is not None else 0} bytes"
            values[name] = value
        return values
