"""The Files and Uploads APIs' rows: every read and write names its tenant, so one tenant's id is
simply not found by another.

A file row is written before its blob (status `uploading`) and marked `processed` after it, and a
deletion marks it `deleting` before its blob goes and the row after: whatever a crash interrupts,
the row says which blob may be left over, and `stale_files` finds it for the sweeper.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update

from gateway.store.database import Database
from gateway.store.file_models import StoredFile, Upload, UploadPart

UPLOADING, PROCESSED, DELETING = "uploading", "processed", "deleting"
PENDING, COMPLETING, COMPLETED, CANCELLED, EXPIRED = (
    "pending",
    "completing",
    "completed",
    "cancelled",
    "expired",
)


def object_id(prefix: str) -> str:
    """OpenAI's id shapes: `file-…`, `upload_…`, `part_…`."""
    return f"{prefix}{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Owner:
    tenant_id: str
    created_by: str | None = None
    user: str | None = None

    def columns(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "created_by": self.created_by, "user": self.user}


@dataclass(frozen=True)
class FilePage:
    files: list[StoredFile]
    has_more: bool


def _live(now: datetime) -> Any:
    return and_(
        StoredFile.status == PROCESSED, or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now)
    )


class FileStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    # Files -------------------------------------------------------------------------------------

    async def begin_file(self, row: StoredFile) -> None:
        async with self.db.session() as session:
            session.add(row)
            await session.commit()

    async def finish_file(self, file_id: str, *, size: int, changes: dict[str, Any]) -> StoredFile:
        async with self.db.session() as session:
            row = await session.get(StoredFile, file_id)
            assert row is not None
            row.bytes, row.status = size, PROCESSED
            for name, value in changes.items():
                setattr(row, name, value)
            await session.commit()
            return row

    async def get_file(self, tenant_id: str, file_id: str, now: datetime) -> StoredFile | None:
        query = select(StoredFile).where(
            StoredFile.id == file_id, StoredFile.tenant_id == tenant_id, _live(now)
        )
        async with self.db.session() as session:
            return (await session.execute(query)).scalar_one_or_none()

    async def list_files(
        self,
        tenant_id: str,
        now: datetime,
        *,
        purpose: str | None,
        after: StoredFile | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> FilePage:
        query = select(StoredFile).where(StoredFile.tenant_id == tenant_id, _live(now))
        if purpose is not None:
            query = query.where(StoredFile.purpose == purpose)
        key = (StoredFile.created_at, StoredFile.id)
        if after is not None:
            query = query.where(_beyond(after, order))
        ordered = [column.asc() if order == "asc" else column.desc() for column in key]
        query = query.order_by(*ordered).limit(limit + 1)
        async with self.db.session() as session:
            rows = list((await session.execute(query)).scalars())
        return FilePage(rows[:limit], len(rows) > limit)

    async def tombstone(self, tenant_id: str, file_id: str, now: datetime) -> StoredFile | None:
        """Mark the file as being deleted (gone for the API from here on), if it is the tenant's."""
        async with self.db.session() as session:
            result = await session.execute(
                update(StoredFile)
                .where(StoredFile.id == file_id, StoredFile.tenant_id == tenant_id, _live(now))
                .values(status=DELETING)
            )
            await session.commit()
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return await session.get(StoredFile, file_id)

    async def remove_file(self, file_id: str) -> None:
        async with self.db.session() as session:
            await session.execute(delete(StoredFile).where(StoredFile.id == file_id))
            await session.commit()

    async def stale_files(
        self, now: datetime, *, uploading_before: datetime, limit: int = 100
    ) -> list[StoredFile]:
        """Rows whose blob should go: tombstones, expired files, uploads a crash left unfinished."""
        query = (
            select(StoredFile)
            .where(
                or_(
                    StoredFile.status == DELETING,
                    and_(StoredFile.status == PROCESSED, StoredFile.expires_at <= now),
                    and_(StoredFile.status == UPLOADING, StoredFile.created_at < uploading_before),
                )
            )
            .limit(limit)
        )
        async with self.db.session() as session:
            rows = list((await session.execute(query)).scalars())
            if rows:
                await session.execute(
                    update(StoredFile)
                    .where(StoredFile.id.in_([row.id for row in rows]))
                    .values(status=DELETING)
                )
                await session.commit()
        return rows

    async def stored_bytes(self, tenant_id: str, now: datetime) -> int:
        """What the tenant stores: its files (but expired ones) and the parts of its open uploads."""
        files = select(func.coalesce(func.sum(StoredFile.bytes), 0)).where(
            StoredFile.tenant_id == tenant_id,
            StoredFile.status != DELETING,
            or_(StoredFile.expires_at.is_(None), StoredFile.expires_at > now),
        )
        parts = (
            select(func.coalesce(func.sum(UploadPart.bytes), 0))
            .join(Upload, Upload.id == UploadPart.upload_id)
            .where(UploadPart.tenant_id == tenant_id, Upload.status.in_((PENDING, COMPLETING)))
        )
        async with self.db.session() as session:
            stored = (await session.execute(files)).scalar_one()
            pending = (await session.execute(parts)).scalar_one()
        return int(stored) + int(pending)

    # Uploads -----------------------------------------------------------------------------------

    async def add(self, row: Upload | UploadPart) -> None:
        async with self.db.session() as session:
            session.add(row)
            await session.commit()

    async def get_upload(self, tenant_id: str, upload_id: str) -> Upload | None:
        query = select(Upload).where(Upload.id == upload_id, Upload.tenant_id == tenant_id)
        async with self.db.session() as session:
            return (await session.execute(query)).scalar_one_or_none()

    async def parts(self, upload_id: str, part_ids: Sequence[str] | None = None) -> list[UploadPart]:
        query = select(UploadPart).where(UploadPart.upload_id == upload_id)
        if part_ids is not None:
            query = query.where(UploadPart.id.in_(list(part_ids)))
        async with self.db.session() as session:
            return list((await session.execute(query.order_by(UploadPart.created_at))).scalars())

    async def move_upload(self, upload_id: str, before: Sequence[str], after: str, **values: Any) -> bool:
        """Compare and swap the upload's status: True when this caller moved it (one caller wins)."""
        async with self.db.session() as session:
            result = await session.execute(
                update(Upload)
                .where(Upload.id == upload_id, Upload.status.in_(list(before)))
                .values(status=after, **values)
            )
            await session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def set_part_bytes(self, part_id: str, size: int) -> None:
        async with self.db.session() as session:
            await session.execute(update(UploadPart).where(UploadPart.id == part_id).values(bytes=size))
            await session.commit()

    async def drop_part(self, part_id: str) -> None:
        async with self.db.session() as session:
            await session.execute(delete(UploadPart).where(UploadPart.id == part_id))
            await session.commit()

    async def drop_parts(self, upload_id: str) -> None:
        async with self.db.session() as session:
            await session.execute(delete(UploadPart).where(UploadPart.upload_id == upload_id))
            await session.commit()

    async def stale_uploads(self, now: datetime, *, limit: int = 100) -> list[Upload]:
        """Pending uploads past their hour, and completions a crash interrupted (an hour on)."""
        query = (
            select(Upload)
            .where(
                or_(
                    and_(Upload.status == PENDING, Upload.expires_at <= now),
                    and_(Upload.status == COMPLETING, Upload.expires_at <= now - timedelta(hours=1)),
                    and_(Upload.status == CANCELLED, Upload.id.in_(select(UploadPart.upload_id))),
                )
            )
            .limit(limit)
        )
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())


def _beyond(after: StoredFile, order: Literal["asc", "desc"]) -> Any:
    """Rows past the cursor file in the listing's order (created_at, then id)."""
    if order == "asc":
        return or_(
            StoredFile.created_at > after.created_at,
            and_(StoredFile.created_at == after.created_at, StoredFile.id > after.id),
        )
    return or_(
        StoredFile.created_at < after.created_at,
        and_(StoredFile.created_at == after.created_at, StoredFile.id < after.id),
    )
