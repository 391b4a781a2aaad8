"""The vector stores API's objects as OpenAI shows them (a store file, a list page, a store's expiry)
and its 404s (vector_stores.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway.errors import NotFound
from gateway.services.stored import unix
from gateway.store.vector_stores import StoredVectorStore, StoredVectorStoreFile


def file_object(row: StoredVectorStoreFile) -> dict[str, Any]:
    return {
        "id": row.file_id,
        "object": "vector_store.file",
        "created_at": unix(row.created_at),
        "vector_store_id": row.vector_store_id,
        "status": row.status,
        "last_error": row.last_error,
        "usage_bytes": row.usage_bytes,
        "chunking_strategy": row.chunking,
        "attributes": dict(row.attributes or {}),
    }


def expires_at(row: StoredVectorStore) -> datetime | None:
    if not row.expires_after_days:
        return None
    return row.last_active_at + timedelta(days=row.expires_after_days)


def page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


# The same answer for an id that never existed and for another tenant's: nothing confirms it.
def no_store(store_id: str, param: str = "vector_store_id") -> NotFound:
    return NotFound(f"No vector store found with id '{store_id}'.", param=param, code="not_found")


def no_file(file_id: str) -> NotFound:
    return NotFound(
        f"No file found with id '{file_id}' in this vector store.", param="file_id", code="not_found"
    )


def no_batch(batch_id: str) -> NotFound:
    return NotFound(f"No file batch found with id '{batch_id}'.", param="batch_id", code="not_found")
