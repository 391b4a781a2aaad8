"""Vector stores (OpenAI's API, docs/memory.md "Vector stores and file search"): the stores, the
files attached to them, their file batches and the chunks a file was cut into, every read and write
scoped to the caller's tenant (`Owner`).

A chunk keeps its text and its embedding (float32 bytes): the store's FAISS index, one per vector
store, is rebuilt from these when its file in the blob store is lost. A store file is keyed by
(store, file id), as OpenAI names it by the file's id; its `attributes` are copied onto nothing:
filters are evaluated against the file row at search time, so an attribute update applies at once.
Another tenant's store is not found (None), exactly as one that never existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.owned import BigId, OwnedColumns, Owner, PageQuery, paged

IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "in_progress", "completed", "failed", "cancelled"


class StoredVectorStore(OwnedColumns, Base):
    """One vector store (migration 0020)."""

    __tablename__ = "vector_stores"
    __table_args__ = (
        Index("ix_vector_stores_tenant_created", "tenant_id", "created_at"),
        Index("ix_vector_stores_created_by", "created_by"),
        Index("ix_vector_stores_end_user", "end_user"),
    )

    name: Mapped[str] = mapped_column(String(256), nullable=False, default="")
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_active_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class StoredVectorStoreFile(Base):
    """A file attached to a vector store, its ingestion status and its attributes."""

    __tablename__ = "vector_store_files"
    __table_args__ = (
        Index("ix_vector_store_files_store", "vector_store_id", "file_id", unique=True),
        Index("ix_vector_store_files_batch", "batch_id"),
        Index("ix_vector_store_files_created_by", "created_by"),
        Index("ix_vector_store_files_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(160), nullable=False)
    file_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    filename: Mapped[str] = mapped_column(String(512), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    last_error: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    chunking: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    batch_id: Mapped[str | None] = mapped_column(String(160), nullable=True)


class StoredFileBatch(OwnedColumns, Base):
    """A file batch: the files it attached carry its id; `cancelled` once cancelled."""

    __tablename__ = "vector_store_file_batches"
    __table_args__ = (
        Index("ix_vector_store_file_batches_store", "vector_store_id"),
        Index("ix_vector_store_file_batches_created_by", "created_by"),
        Index("ix_vector_store_file_batches_end_user", "end_user"),
    )

    vector_store_id: Mapped[str] = mapped_column(String(160), nullable=False)
    cancelled: Mapped[bool] = mapped_column(nullable=False, default=False)


class StoredChunk(Base):
    """One chunk of a store file: its text and its embedding; `seq` is its id in the vector index."""

    __tablename__ = "vector_store_chunks"
    __table_args__ = (
        Index("ix_vector_store_chunks_file", "vector_store_id", "file_id"),
        Index("ix_vector_store_chunks_created_by", "created_by"),
        Index("ix_vector_store_chunks_end_user", "end_user"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    vector_store_id: Mapped[str] = mapped_column(String(160), nullable=False)
    file_id: Mapped[str] = mapped_column(String(160), nullable=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


@dataclass(frozen=True)
class Counts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed + self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {
            "in_progress": self.in_progress,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "total": self.total,
        }


@dataclass(frozen=True)
class ChunkRow:
    seq: int
    file_id: str
    position: int
    text: str


class VectorStoreStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    # Stores --------------------------------------------------------------------------------------

    async def add(self, row: StoredVectorStore | StoredFileBatch) -> None:
        async with self.db.session() as session, session.begin():
            session.add(row)

    async def get(self, owner: Owner, store_id: str) -> StoredVectorStore | None:
        table = StoredVectorStore
        async with self.db.session() as session:
            found = await session.execute(select(table).where(owner.owns(table), table.id == store_id))
            return found.scalar_one_or_none()

    async def page(self, owner: Owner, query: PageQuery) -> tuple[list[StoredVectorStore], bool]:
        table = StoredVectorStore
        async with self.db.session() as session:
            cursor = None
            if query.after is not None:
                after = await session.execute(
                    select(table.created_at, table.seq).where(owner.owns(table), table.id == query.after)
                )
                cursor = after.tuples().one_or_none()
            rows = list(
                (
                    await session.execute(paged(select(table).where(owner.owns(table)), table, cursor, query))
                ).scalars()
            )
        return rows[: query.limit], len(rows) > query.limit

    async def update(self, owner: Owner, store_id: str, **values: Any) -> StoredVectorStore | None:
        table = StoredVectorStore
        async with self.db.session() as session, session.begin():
            found = await session.execute(select(table).where(owner.owns(table), table.id == store_id))
            row = found.scalar_one_or_none()
            if row is None:
                return None
            for name, value in values.items():
                setattr(row, name, value)
            return row

    async def delete(self, owner: Owner, store_id: str) -> bool:
        """The store, its files, batches and chunks, in one transaction."""
        async with self.db.session() as session, session.begin():
            table = StoredVectorStore
            gone = await session.execute(delete(table).where(owner.owns(table), table.id == store_id))
            if not gone.rowcount:  # type: ignore[attr-defined]
                return False
            for other in (StoredVectorStoreFile, StoredFileBatch, StoredChunk):
                await session.execute(delete(other).where(other.vector_store_id == store_id))
            return True

    async def counts(self, store_id: str, *, batch_id: str | None = None) -> Counts:
        table = StoredVectorStoreFile
        query = select(table.status, func.count()).where(table.vector_store_id == store_id)
        if batch_id is not None:
            query = query.where(table.batch_id == batch_id)
        async with self.db.session() as session:
            rows = dict((await session.execute(query.group_by(table.status))).tuples().all())
        return Counts(
            **{status: int(rows.get(status, 0)) for status in (IN_PROGRESS, COMPLETED, FAILED, CANCELLED)}
        )

    async def usage_bytes(self, store_id: str) -> int:
        table = StoredVectorStoreFile
        async with self.db.session() as session:
            found = await session.scalar(
                select(func.sum(table.usage_bytes)).where(table.vector_store_id == store_id)
            )
            return int(found or 0)

    # Files ---------------------------------------------------------------------------------------

    async def attach(self, rows: Sequence[StoredVectorStoreFile]) -> list[StoredVectorStoreFile]:
        """Attach files; a file already in the store is replaced (its chunks go: it is ingested again)."""
        async with self.db.session() as session, session.begin():
            for row in rows:
                await _drop_file(session, row.vector_store_id, row.file_id)
                session.add(row)
        return list(rows)

    async def file(self, owner: Owner, store_id: str, file_id: str) -> StoredVectorStoreFile | None:
        table = StoredVectorStoreFile
        async with self.db.session() as session:
            found = await session.execute(
                select(table).where(
                    owner.owns(table), table.vector_store_id == store_id, table.file_id == file_id
                )
            )
            return found.scalar_one_or_none()

    async def files(
        self, owner: Owner, store_id: str, *, status: str | None = None, batch_id: str | None = None
    ) -> list[StoredVectorStoreFile]:
        table = StoredVectorStoreFile
        query = select(table).where(owner.owns(table), table.vector_store_id == store_id)
        if status is not None:
            query = query.where(table.status == status)
        if batch_id is not None:
            query = query.where(table.batch_id == batch_id)
        async with self.db.session() as session:
            return list((await session.execute(query.order_by(table.created_at, table.seq))).scalars())

    async def set_file(
        self, owner: Owner, store_id: str, file_id: str, **values: Any
    ) -> StoredVectorStoreFile | None:
        table = StoredVectorStoreFile
        async with self.db.session() as session, session.begin():
            found = await session.execute(
                select(table).where(
                    owner.owns(table), table.vector_store_id == store_id, table.file_id == file_id
                )
            )
            row = found.scalar_one_or_none()
            if row is None:
                return None
            for name, value in values.items():
                setattr(row, name, value)
            return row

    async def detach(self, owner: Owner, store_id: str, file_id: str) -> list[int] | None:
        """The file out of the store with its chunks; the chunks' row numbers (None: no such file)."""
        table = StoredVectorStoreFile
        async with self.db.session() as session, session.begin():
            found = await session.execute(
                select(table.seq).where(
                    owner.owns(table), table.vector_store_id == store_id, table.file_id == file_id
                )
            )
            if found.scalar_one_or_none() is None:
                return None
            return await _drop_file(session, store_id, file_id)

    async def cancel_batch(self, owner: Owner, store_id: str, batch_id: str) -> StoredFileBatch | None:
        """The batch cancelled with its files still in progress (None: no such batch)."""
        async with self.db.session() as session, session.begin():
            table = StoredFileBatch
            found = await session.execute(
                select(table).where(
                    owner.owns(table), table.id == batch_id, table.vector_store_id == store_id
                )
            )
            batch = found.scalar_one_or_none()
            if batch is None:
                return None
            files = await session.execute(
                select(StoredVectorStoreFile).where(
                    StoredVectorStoreFile.batch_id == batch_id, StoredVectorStoreFile.status == IN_PROGRESS
                )
            )
            for row in files.scalars():
                # A batch whose files are all done stays as it ended.
                row.status, batch.cancelled = CANCELLED, True
            return batch

    async def batch(self, owner: Owner, store_id: str, batch_id: str) -> StoredFileBatch | None:
        table = StoredFileBatch
        async with self.db.session() as session:
            found = await session.execute(
                select(table).where(
                    owner.owns(table), table.id == batch_id, table.vector_store_id == store_id
                )
            )
            return found.scalar_one_or_none()

    # Chunks --------------------------------------------------------------------------------------

    async def add_chunks(
        self, row: StoredVectorStoreFile, chunks: Sequence[tuple[str, bytes]], usage_bytes: int
    ) -> dict[int, bytes] | None:
        """A file's chunks and its completion in one transaction, unless it left the store or was
        cancelled meanwhile (None). The new chunks' vectors by row number."""
        table = StoredVectorStoreFile
        async with self.db.session() as session, session.begin():
            found = await session.execute(select(table).where(table.seq == row.seq).with_for_update())
            current = found.scalar_one_or_none()
            if current is None or current.status != IN_PROGRESS:
                return None
            await _drop_file(session, row.vector_store_id, row.file_id, keep_row=True)
            added = [
                StoredChunk(
                    vector_store_id=row.vector_store_id,
                    file_id=row.file_id,
                    tenant_id=row.tenant_id,
                    created_by=row.created_by,
                    end_user=row.end_user,
                    position=position,
                    text=text,
                    vector=vector,
                )
                for position, (text, vector) in enumerate(chunks)
            ]
            session.add_all(added)
            await session.flush()
            current.status, current.usage_bytes, current.last_error = COMPLETED, usage_bytes, None
            return {chunk.seq: chunk.vector for chunk in added}

    async def chunks(self, store_id: str, file_ids: Sequence[str] | None = None) -> list[ChunkRow]:
        table = StoredChunk
        query = select(table.seq, table.file_id, table.position, table.text).where(
            table.vector_store_id == store_id
        )
        if file_ids is not None:
            query = query.where(table.file_id.in_(list(file_ids)))
        async with self.db.session() as session:
            rows = await session.execute(query.order_by(table.file_id, table.position))
            return [ChunkRow(*row) for row in rows.tuples()]

    async def indexed(self) -> list[str]:
        """Every vector store holding a chunk (what `python -m gateway memory copy` walks)."""
        async with self.db.session() as session:
            return list(await session.scalars(select(StoredChunk.vector_store_id).distinct()))

    async def vectors(self, store_id: str | None) -> dict[int, bytes]:
        """Every chunk vector of a store by row number: what its index is rebuilt from."""
        table = StoredChunk
        async with self.db.session() as session:
            rows = await session.execute(
                select(table.seq, table.vector).where(table.vector_store_id == store_id)
            )
            return {seq: vector for seq, vector in rows.tuples()}


async def _drop_file(
    session: AsyncSession, store_id: str, file_id: str, *, keep_row: bool = False
) -> list[int]:
    chunks = StoredChunk
    where = (chunks.vector_store_id == store_id, chunks.file_id == file_id)
    seqs = list((await session.execute(select(chunks.seq).where(*where))).scalars())
    await session.execute(delete(chunks).where(*where))
    if not keep_row:
        table = StoredVectorStoreFile
        await session.execute(
            delete(table).where(table.vector_store_id == store_id, table.file_id == file_id)
        )
    return seqs
