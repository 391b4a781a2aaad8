"""GDPR export and erasure (issue 21, point 5): the one registry of every kind of data held about a
tenant or an end user, each a small exporter/eraser, so that the next feature's table is one entry.

A subject is a tenant, or one end user of a tenant (OpenAI's `user`, kept as `end_user`, `user` or
mem0's `user_id` depending on the table). Every kind answers three questions on one SQL session:
`export` (its rows, and its children's, as JSON-ready dicts), `erase` (one chunk gone, with the
blob keys and vector rows that must leave the other stores) and `remaining` (the sweep: rows still
naming the subject). Deleting a kind's children reuses retention's `delete_children`, so the two
never disagree about what belongs to what.

`tests/architecture/test_gdpr_registry.py` fails when a table with a user or tenant column is
neither in the registry nor listed in `EXEMPT` with its reason.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, delete, false, func, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.batches import Batch, BatchLine
from gateway.store.completions import StoredCompletion
from gateway.store.conversations import StoredConversation, StoredItem
from gateway.store.evals import EvalRunRow, EvalSetRow
from gateway.store.feedback import StoredFeedback
from gateway.store.file_models import StoredFile, Upload, UploadPart
from gateway.store.fine_tuning import FineTuningEventRow, FineTuningJobRow
from gateway.store.job_rows import JobRow
from gateway.store.memories import StoredMemory, StoredMemoryEvent
from gateway.store.memory_recalls import StoredRecall
from gateway.store.moderation import StoredFlag
from gateway.store.responses import ResponseEvent, StoredResponse
from gateway.store.retention import CHUNK, Swept, delete_children
from gateway.store.vector_stores import StoredChunk, StoredFileBatch, StoredVectorStore, StoredVectorStoreFile
from gateway.store.voices import StoredVoice, StoredVoiceConsent

# The columns that name an end user, in the tables that have one.
USER_COLUMNS = ("end_user", "user", "user_id")


@dataclass(frozen=True)
class Subject:
    """Whose data: a whole tenant (`user` None) or one end user of it."""

    tenant_id: str
    user: str | None = None

    @property
    def whole_tenant(self) -> bool:
        return self.user is None


@dataclass
class Erased:
    """What one chunk of an erasure removed: rows from SQL, and what leaves the blob store and the
    vector index (`Swept`'s shape, shared with retention)."""

    rows: int = 0
    blob_keys: list[str] = field(default_factory=list)
    # Fine-tuning adapters: key prefixes whose ADAPTER_FILES go.
    blob_prefixes: list[str] = field(default_factory=list)
    vectors: dict[str | None, list[int]] = field(default_factory=dict)


class DataKind(Protocol):
    """One kind of data held about a subject."""

    @property
    def name(self) -> str: ...

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables this kind covers (the architecture test's coverage)."""
        ...

    async def export(self, session: AsyncSession, subject: Subject) -> dict[str, list[dict[str, Any]]]: ...

    async def erase(self, session: AsyncSession, subject: Subject) -> Erased:
        """One chunk (call again while `rows` is CHUNK); the caller commits."""
        ...

    async def remaining(self, session: AsyncSession, subject: Subject) -> int: ...


@dataclass(frozen=True)
class Child:
    """Rows that belong to a kind's row (deleted with it by retention's `delete_children`)."""

    table: Any
    column: str  # the child's column naming its parent
    parent: str  # the parent's attribute it holds


@dataclass(frozen=True)
class OwnedKind:
    """Rows carrying a tenant and an end user column, deleted with their children."""

    name: str
    table: Any
    user_columns: tuple[str, ...]
    # Retention's name of the kind when it deletes children or notes blobs and vectors.
    retention_kind: str | None = None
    children: tuple[Child, ...] = ()
    # The blob keys a row holds (deleted with it).
    blobs: Callable[[Any], list[str]] | None = None
    # Where a row's blob (`blob_key`) goes in an export's ZIP; None: not exported.
    export_blob: Callable[[dict[str, Any]], str] | None = None

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table.__tablename__, *(child.table.__tablename__ for child in self.children))

    def where(self, subject: Subject) -> ColumnElement[bool]:
        tenant: ColumnElement[bool] = self.table.tenant_id == subject.tenant_id
        if subject.user is None:
            return tenant
        if not self.user_columns:  # a tenant's data naming no end user (eval sets)
            return false()
        named = [getattr(self.table, column) == subject.user for column in self.user_columns]
        return and_(tenant, or_(*named))

    async def export(self, session: AsyncSession, subject: Subject) -> dict[str, list[dict[str, Any]]]:
        rows = (await session.scalars(select(self.table).where(self.where(subject)))).all()
        found: dict[str, list[dict[str, Any]]] = {self.name: [as_json(row) for row in rows]}
        for child in self.children:
            parents = [getattr(row, child.parent) for row in rows]
            found[child.table.__tablename__] = [
                as_json(row)
                for start in range(0, len(parents), CHUNK)
                for row in (
                    await session.scalars(
                        select(child.table).where(
                            getattr(child.table, child.column).in_(parents[start : start + CHUNK])
                        )
                    )
                ).all()
            ]
        return found

    def blob_keys(self, rows: Sequence[Any]) -> list[str]:
        if self.blobs is None:
            return []
        return [key for row in rows for key in self.blobs(row)]

    async def erase(self, session: AsyncSession, subject: Subject) -> Erased:
        rows = (await session.scalars(select(self.table).where(self.where(subject)).limit(CHUNK))).all()
        if not rows:
            return Erased()
        swept = Swept(rows=len(rows))
        if self.retention_kind is not None:
            await delete_children(session, self.retention_kind, rows, swept)
        for child in self.children:
            if self.retention_kind is None:
                parents = [getattr(row, child.parent) for row in rows]
                await session.execute(
                    delete(child.table).where(getattr(child.table, child.column).in_(parents))
                )
        key = inspect(self.table).primary_key[0]
        await session.execute(delete(self.table).where(key.in_([getattr(row, key.key) for row in rows])))
        return Erased(
            rows=len(rows),
            blob_keys=self.blob_keys(rows),
            blob_prefixes=list(swept.blob_keys),
            vectors=swept.vectors,
        )

    async def remaining(self, session: AsyncSession, subject: Subject) -> int:
        query = select(func.count()).select_from(self.table).where(self.where(subject))
        return int(await session.scalar(query) or 0)


def as_json(row: Any) -> dict[str, Any]:
    """A row's columns as JSON values (times in ISO 8601, bytes in base64), by column name."""
    mapper = inspect(type(row))
    return {attr.columns[0].name: _jsonable(getattr(row, attr.key)) for attr in mapper.column_attrs}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _file_blob(row: Any) -> list[str]:
    return [row.blob_key]


def _file_name(row: dict[str, Any]) -> str:
    return f"files/{row['id']}/{row['filename'].replace('/', '_')}"


def _clip_name(folder: str) -> Callable[[dict[str, Any]], str]:
    """The recordings and clips: a consent's as it was sent, a voice's as its 16 kHz WAV."""
    return lambda row: f"{folder}/{row['id']}" + (".wav" if folder == "custom_voices" else "")


def _vector_store_index(row: Any) -> list[str]:
    """A vector store's FAISS index (gateway/vector_setup.py keys one per store, as memory's per tenant)."""
    return [f"vector-store-index/{row.id}/faiss.index"]


# Order matters: children of other kinds first (upload parts before their uploads), the ledger before
# the rows that link it to a user (gateway/store/gdpr_special.py puts it first).
OWNED_KINDS: tuple[OwnedKind, ...] = (
    OwnedKind("chat_completions", StoredCompletion, ("end_user",), retention_kind="chat_completions"),
    OwnedKind(
        "responses",
        StoredResponse,
        ("end_user",),
        retention_kind="responses",
        children=(Child(ResponseEvent, "response_id", "id"),),
    ),
    OwnedKind(
        "conversations",
        StoredConversation,
        ("end_user",),
        retention_kind="conversations",
        children=(Child(StoredItem, "conversation_seq", "seq"),),
    ),
    # Items the user added to someone else's conversation.
    OwnedKind("conversation_items", StoredItem, ("end_user",)),
    OwnedKind("upload_parts", UploadPart, ("user",), blobs=_file_blob),
    OwnedKind("uploads", Upload, ("user",)),
    OwnedKind("files", StoredFile, ("user",), blobs=_file_blob, export_blob=_file_name),
    OwnedKind(
        "batches",
        Batch,
        ("end_user",),
        retention_kind="batches",
        children=(Child(BatchLine, "batch_id", "id"),),
    ),
    OwnedKind(
        "memories",
        StoredMemory,
        ("end_user", "user_id"),
        retention_kind="memories",
        children=(Child(StoredMemoryEvent, "memory_id", "id"),),
    ),
    # History of memories deleted earlier (kept by the memory API after the memory).
    OwnedKind("memory_history", StoredMemoryEvent, ("end_user",)),
    # What memory in chat recalled and placed for each request (the panel's memory page).
    OwnedKind("memory_recalls", StoredRecall, ("end_user",)),
    OwnedKind("feedback", StoredFeedback, ("end_user",)),
    OwnedKind(
        "fine_tuning_jobs",
        FineTuningJobRow,
        ("end_user",),
        retention_kind="fine_tuning_jobs",
        children=(Child(FineTuningEventRow, "job_id", "id"),),
    ),
    OwnedKind("moderation_flags", StoredFlag, ("end_user",)),
    # A subject's vector stores with everything in them and their index; then what the subject put
    # in others' stores (its chunks leave search at once; their vectors with the index's next rebuild).
    OwnedKind(
        "vector_stores",
        StoredVectorStore,
        ("end_user",),
        children=(
            Child(StoredVectorStoreFile, "vector_store_id", "id"),
            Child(StoredFileBatch, "vector_store_id", "id"),
            Child(StoredChunk, "vector_store_id", "id"),
        ),
        blobs=_vector_store_index,
    ),
    OwnedKind("vector_store_files", StoredVectorStoreFile, ("end_user",)),
    OwnedKind("vector_store_file_batches", StoredFileBatch, ("end_user",)),
    OwnedKind("vector_store_chunks", StoredChunk, ("end_user",)),
    # The durable jobs run for the subject (a deleted running job loses its lease, docs/jobs.md).
    OwnedKind("jobs", JobRow, ("user",)),
    # A tenant's eval sets with their runs, then runs left of a set already gone (no end user).
    OwnedKind(
        "eval_sets",
        EvalSetRow,
        (),
        children=(Child(EvalRunRow, "set_id", "id"),),
    ),
    OwnedKind("eval_runs", EvalRunRow, ()),
    # Custom voices, then the consent recordings they were made under: rows and their audio blobs.
    OwnedKind(
        "custom_voices",
        StoredVoice,
        ("end_user",),
        retention_kind="custom_voices",
        blobs=_file_blob,
        export_blob=_clip_name("custom_voices"),
    ),
    OwnedKind(
        "voice_consents",
        StoredVoiceConsent,
        ("end_user",),
        blobs=_file_blob,
        export_blob=_clip_name("voice_consents"),
    ),
)
