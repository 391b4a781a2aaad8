"""A memory's history as read (`Event`, one `memory_history` row), and what an UPDATE that changes
the memory's expiry records in it (mem0's `update(id, expiration_date=...)`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    id: str
    memory_id: str
    event: str
    old_memory: str | None
    new_memory: str | None
    input: list[dict[str, Any]] | None
    metadata: dict[str, Any]
    created_at: datetime
    end_user: str | None

    @classmethod
    def of(cls, row: Any) -> Event:
        """A `memory_history` row (memories.py's `StoredMemoryEvent`) as read."""
        return cls(
            row.id,
            row.memory_id,
            row.event,
            row.old_memory,
            row.new_memory,
            row.input,
            dict(row.tags or {}),
            row.created_at,
            row.end_user,
        )


@dataclass(frozen=True)
class Expiry:
    """An update's new expiry: `at` (naive UTC), or None to clear it (the memory never expires)."""

    at: datetime | None


def expiry_change(old: datetime | None, new: datetime | None) -> dict[str, str | None]:
    """What an UPDATE's history entry says of the expiry it changed (its `metadata`, as mem0's client
    reads it): the expiry before and after, in ISO 8601 UTC (null: none)."""

    def iso(at: datetime | None) -> str | None:
        return at.replace(tzinfo=UTC).isoformat() if at is not None else None

    return {"previous_expiration_date": iso(old), "expiration_date": iso(new)}
