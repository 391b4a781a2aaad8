"""Blobs as files under one directory: the default for one host (`make run`, Compose with a volume).
A put writes a temporary file beside its target and renames it into place, so a reader never sees
half a blob and a crash leaves only a `*.partial` file (swept at start)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio

from gateway.blobs.interface import READ_CHUNK, check_key, counted

_PARTIAL = ".partial"


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._prepare)

    async def close(self) -> None:
        return None

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Left by a put that a crash interrupted: never renamed into place, so nobody refers to them.
        for partial in self.root.rglob(f"*{_PARTIAL}"):
            with contextlib.suppress(OSError):
                partial.unlink()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> int:
        target = self._path(key)
        await anyio.to_thread.run_sync(lambda: target.parent.mkdir(parents=True, exist_ok=True))
        partial = target.with_name(f"{target.name}.{secrets.token_hex(4)}{_PARTIAL}")
        size = 0
        try:
            # anyio's file runs each write on a worker thread: the event loop never waits on the disk.
            async with await anyio.open_file(partial, "wb") as out:
                async for chunk in counted(chunks, max_bytes):
                    await out.write(chunk)
                    size += len(chunk)
            await anyio.to_thread.run_sync(os.replace, partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return size

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            source = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        async with source:
            while chunk := await source.read(READ_CHUNK):
                yield chunk

    async def size(self, key: str) -> int | None:
        try:
            stat = await anyio.Path(self._path(key)).stat()
        except FileNotFoundError:
            return None
        return stat.st_size

    async def delete(self, key: str) -> None:
        await anyio.Path(self._path(key)).unlink(missing_ok=True)
