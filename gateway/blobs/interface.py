"""The blob store's contract: bytes put streamed from an async iterator (under a size cap, nothing
left behind when the put fails), read back streamed, sized and deleted, by key."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol, runtime_checkable

# Bytes handed to the client per chunk when a blob is read back.
READ_CHUNK = 256 * 1024


class BlobTooLarge(Exception):
    """A put passed its `max_bytes`: the blob is not kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The blob is larger than {limit} bytes.")
        self.limit = limit


@runtime_checkable
class BlobStore(Protocol):
    """Bytes by key. Keys are the gateway's own (`new_blob_key`): `/`-separated, no `..`."""

    async def start(self) -> None:
        """Connect (nothing connects before)."""

    async def close(self) -> None: ...

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> int:
        """Store the bytes of `chunks` under `key` (replacing any), and return their count. Raises
        `BlobTooLarge` as soon as more than `max_bytes` arrive; on any failure nothing is kept."""
        ...

    def get(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes, streamed; `KeyError` (on the first read) when there is none."""
        ...

    async def size(self, key: str) -> int | None:
        """The blob's size in bytes, or None when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the blob; deleting one that is not there is not an error."""
        ...


def new_blob_key(kind: str, tenant_id: str, object_id: str) -> str:
    """A key that never collides, grouped by tenant (an operator can see a tenant's bytes)."""
    return f"{kind}/{tenant_id}/{object_id}-{secrets.token_hex(4)}"


async def counted(chunks: AsyncIterable[bytes], max_bytes: int | None) -> AsyncIterator[bytes]:
    """`chunks`, raising `BlobTooLarge` once more than `max_bytes` have passed."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if max_bytes is not None and seen > max_bytes:
            raise BlobTooLarge(max_bytes)
        yield chunk


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"Not a blob key: {key!r}")
    return key
