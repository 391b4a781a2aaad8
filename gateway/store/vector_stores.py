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

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.database import Database
from gateway.store.file_models import StoredFile
from gateway.store.files import PROCESSED
from gateway.store.owned import Owner, PageQuery, paged
from gateway.store.vector_models import StoredChunk, StoredFileBatch, StoredVectorStore, StoredVectorStoreFile

IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "in_progress", "completed", "failed", "cancelled"


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


class FileGone(Exception):
    """A file to attach was deleted (or never was the tenant's live file)."""

    def __init__(self, file_id: str) -> None:
        super().__init__(file_id)
        self.file_id = file_id


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
        """Attach files; a file already in the store is replaced (its chunks go: it is ingested again).
        A file deleted meanwhile raises `FileGone`, nothing attached: its row is read under a lock
        (PostgreSQL's FOR UPDATE; SQLite writes one at a time), so a deletion either waits for this
        attach and then finds the row to drop, or commits first and is seen here."""
        async with self.db.session() as session, session.begin():
            ids = sorted({row.file_id for row in rows})
            live = set(
                (
                    await session.execute(
                        select(StoredFile.id)
                        .where(StoredFile.id.in_(ids), StoredFile.status == PROCESSED)
                        .with_for_update()
                    )
                ).scalars()
            )
            for file_id in ids:
                if file_id not in live:
                    raise FileGone(file_id)
            for row in rows:
                await _drop_file(session, row.vector_store_id, row.file_id)
                session.add(row)
        return list(rows)

    async def drop_files(self, file_ids: Collection[str]) -> dict[str, list[int]]:
        """These files out of every store holding them, with their chunks, in one transaction
        (a deleted file leaves its stores, as OpenAI's does): the chunks' row numbers by store."""
        if not file_ids:
            return {}
        table, chunks = StoredVectorStoreFile, StoredChunk
        ids = sorted(set(file_ids))
        async with self.db.session() as session, session.begin():
            held = await session.execute(
                select(chunks.vector_store_id, chunks.seq).where(chunks.file_id.in_(ids))
            )
            dropped: dict[str, list[int]] = {}
            for store_id, seq in held.tuples():
                dropped.setdefault(store_id, []).append(seq)
            await session.execute(delete(chunks).where(chunks.file_id.in_(ids)))
            await session.execute(delete(table).where(table.file_id.in_(ids)))
        return dropped

    async def user_files(self, tenant_id: str, user: str | None) -> list[str]:
        """The Files API's file ids of an end user (`user` given) or of a whole tenant (None), live
        or not: what a GDPR erasure takes out of the stores before it deletes the files."""
        query = select(StoredFile.id).where(StoredFile.tenant_id == tenant_id)
        if user is not None:
            query = query.where(StoredFile.user == user)
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())

    async def holds(self, store_id: str, file_id: str) -> bool:
        """Whether the store still holds the file (an ingestion's check after it wrote its index)."""
        table = StoredVectorStoreFile
        async with self.db.session() as session:
            found = await session.scalar(
                select(table.seq).where(table.vector_store_id == store_id, table.file_id == file_id)
            )
            return found is not None

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
