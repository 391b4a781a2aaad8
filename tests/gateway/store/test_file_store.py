"""The Files tables on SQLite and on a real PostgreSQL: tenant-scoped reads, keyset pagination in
both orders, expiry, the storage count, and the sweeper finishing what a crash left (tombstones,
unfinished uploads, expired files and uploads) with a real local blob store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.blobs import LocalBlobStore
from gateway.services.file_sweeper import STALE_UPLOAD, FileSweeper
from gateway.store import Database, FileStore, utcnow
from gateway.store.file_models import StoredFile, Upload, UploadPart
from gateway.store.files import DELETING, PENDING, PROCESSED, UPLOADING, object_id
from tests.services import PostgresServer

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
async def files(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"files_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield FileStore(database)
    await database.close()


def _file(
    tenant: str, *, size: int = 10, status: str = PROCESSED, age_s: float = 0, **extra: object
) -> StoredFile:
    file_id = object_id("file-")
    return StoredFile(
        id=file_id,
        tenant_id=tenant,
        created_by="key_1",
        user="alice",
        filename=f"{file_id}.txt",
        purpose="user_data",
        bytes=size,
        blob_key=f"files/{tenant}/{file_id}",
        status=status,
        created_at=utcnow() - timedelta(seconds=age_s),
        **extra,
    )


async def test_pages_in_both_orders_per_tenant(files: FileStore) -> None:
    base = utcnow()
    rows = []
    for index in range(7):
        row = _file("tn_a")
        row.created_at = base + timedelta(seconds=index // 2)  # pairs share a second: the id breaks ties
        rows.append(row)
        await files.begin_file(row)
    await files.begin_file(_file("tn_b"))
    now = base + timedelta(minutes=1)
    for order in ("asc", "desc"):
        seen: list[str] = []
        after = None
        while True:
            page = await files.list_files("tn_a", now, purpose=None, after=after, limit=3, order=order)
            seen += [row.id for row in page.files]
            if not page.has_more:
                break
            after = page.files[-1]
        expected = sorted(rows, key=lambda row: (row.created_at, row.id), reverse=order == "desc")
        assert seen == [row.id for row in expected]
    assert await files.get_file("tn_b", rows[0].id, now) is None
    assert await files.get_file("tn_a", rows[0].id, now) is not None


async def test_visibility_and_storage_count(files: FileStore) -> None:
    now = utcnow()
    live = _file("tn_c", size=100)
    expired = _file("tn_c", size=1000, expires_at=now - timedelta(seconds=1))
    half = _file("tn_c", size=0, status=UPLOADING)
    gone = _file("tn_c", size=10_000, status=DELETING)
    for row in (live, expired, half, gone):
        await files.begin_file(row)
    page = await files.list_files("tn_c", now, purpose=None, after=None, limit=10, order="desc")
    assert [row.id for row in page.files] == [live.id]
    assert await files.get_file("tn_c", expired.id, now) is None
    upload = Upload(
        id=object_id("upload_"),
        tenant_id="tn_c",
        filename="u",
        purpose="batch",
        bytes=50,
        mime_type="x/y",
        status=PENDING,
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    await files.add(upload)
    await files.add(
        UploadPart(
            id=object_id("part_"),
            upload_id=upload.id,
            tenant_id="tn_c",
            bytes=50,
            blob_key="parts/x",
            created_at=now,
        )
    )
    assert await files.stored_bytes("tn_c", now) == 150  # the live file and the open upload's part
    assert await files.tombstone("tn_other", live.id, now) is None
    assert (await files.tombstone("tn_c", live.id, now)) is not None
    assert await files.get_file("tn_c", live.id, now) is None


async def test_sweeper_finishes_what_a_crash_left(files: FileStore, tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()

    async def blob(key: str) -> str:
        async def one() -> AsyncIterator[bytes]:
            yield b"bytes"

        await blobs.put(key, one())
        return key

    now = utcnow()
    keep = _file("tn_s")
    tombstone = _file("tn_s", status=DELETING)  # deleted, blob not yet
    crashed = _file("tn_s", status=UPLOADING, age_s=STALE_UPLOAD.total_seconds() + 60)  # its replica died
    recent = _file("tn_s", status=UPLOADING)  # still being written
    expired = _file("tn_s", expires_at=now - timedelta(seconds=1))
    for row in (keep, tombstone, crashed, recent, expired):
        await blob(row.blob_key)
        await files.begin_file(row)
    old_upload = Upload(
        id=object_id("upload_"),
        tenant_id="tn_s",
        filename="u",
        purpose="batch",
        bytes=5,
        mime_type="x/y",
        status=PENDING,
        created_at=now - timedelta(hours=2),
        expires_at=now - timedelta(hours=1),
    )
    await files.add(old_upload)
    part = UploadPart(
        id=object_id("part_"),
        upload_id=old_upload.id,
        tenant_id="tn_s",
        bytes=5,
        blob_key=await blob("parts/tn_s/p1"),
        created_at=now,
    )
    await files.add(part)

    sweeper = FileSweeper(files, blobs, interval_s=3600)
    assert await sweeper.sweep() == 4
    for row in (tombstone, crashed, expired):
        assert await blobs.size(row.blob_key) is None
    for row in (keep, recent):
        assert await blobs.size(row.blob_key) == 5
    assert await blobs.size(part.blob_key) is None
    assert await files.parts(old_upload.id) == []
    swept = await files.get_upload("tn_s", old_upload.id)
    assert swept is not None and swept.status == "expired"
    assert await sweeper.sweep() == 0
