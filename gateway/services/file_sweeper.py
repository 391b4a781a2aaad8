"""Deleting what no request will: the blobs and rows of expired files, of deletions a crash
interrupted (tombstones), of uploads a crash left unfinished, and the parts of expired or cancelled
uploads. Every replica may run it: each step is idempotent (deleting a blob twice is no error)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from gateway.background import cancelled
from gateway.blobs import BlobStore
from gateway.services.files import ForgetFiles
from gateway.store import FileStore, utcnow
from gateway.store.files import COMPLETING, EXPIRED, PENDING

_log = logging.getLogger("tantra.files")
# A file still `uploading` after this long belongs to a request that died with its replica.
STALE_UPLOAD = timedelta(hours=24)


class FileSweeper:
    def __init__(self, files: FileStore, blobs: BlobStore, *, interval_s: float) -> None:
        self._files = files
        self._blobs = blobs
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        # Set when the vector stores API is served: a file's stores lose it before its row goes.
        self.forget: ForgetFiles | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sweep()
            except Exception:
                _log.exception("file sweeper: this round failed; the next one retries")

    async def sweep(self) -> int:
        """One round; the number of blobs deleted."""
        now = utcnow()
        deleted = 0
        stale = await self._files.stale_files(now, uploading_before=now - STALE_UPLOAD)
        if stale and self.forget is not None:
            await self.forget([row.id for row in stale])
        for row in stale:
            await self._blobs.delete(row.blob_key)
            await self._files.remove_file(row.id)
            deleted += 1
        for upload in await self._files.stale_uploads(now):
            for part in await self._files.parts(upload.id):
                await self._blobs.delete(part.blob_key)
                deleted += 1
            await self._files.drop_parts(upload.id)
            if upload.status in (PENDING, COMPLETING):
                await self._files.move_upload(upload.id, (upload.status,), EXPIRED)
        return deleted
