"""One contract, two backends: LocalBlobStore on a directory and S3BlobStore on a real S3-compatible
server (moto's standalone server, over HTTP)."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.blobs import BlobStore, BlobTooLarge, LocalBlobStore, S3BlobStore, S3Options, new_blob_key
from gateway.blobs.s3 import MIN_PART_BYTES
from tests.services import S3Server

_buckets = itertools.count()


@pytest.fixture(params=["local", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    store: BlobStore
    if request.param == "local":
        store = LocalBlobStore(tmp_path / "blobs")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        store = S3BlobStore(
            S3Options(
                bucket=server.bucket(f"blobs-{next(_buckets)}"),
                prefix="tantra/",
                endpoint_url=server.url,
                region="us-east-1",
                access_key_id="test",
                secret_access_key="test",
                part_bytes=MIN_PART_BYTES,
            )
        )
    await store.start()
    yield store
    await store.close()


async def _chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(store: BlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(key)])


async def test_put_get_size_delete(blobs: BlobStore) -> None:
    key = new_blob_key("files", "tn_a", "file-1")
    assert await blobs.put(key, _chunks(b"hello\n" * 10)) == 60
    assert await blobs.size(key) == 60
    assert await _read(blobs, key) == b"hello\n" * 10
    await blobs.delete(key)
    assert await blobs.size(key) is None
    with pytest.raises(KeyError):
        await _read(blobs, key)
    await blobs.delete(key)  # again: not an error


async def test_empty_blob_and_replacement(blobs: BlobStore) -> None:
    key = new_blob_key("files", "tn_a", "file-2")
    assert await blobs.put(key, _chunks(b"")) == 0
    assert await blobs.size(key) == 0
    assert await _read(blobs, key) == b""
    await blobs.put(key, _chunks(b"second"))
    assert await _read(blobs, key) == b"second"


async def test_large_blob_streams_in_parts(blobs: BlobStore) -> None:
    """12 MiB and a bit: three S3 parts (5 MiB each at most), the same bytes back."""
    data = os.urandom(12 * 1024 * 1024 + 12345)
    key = new_blob_key("files", "tn_a", "file-3")
    assert await blobs.put(key, _chunks(data, 1 << 20)) == len(data)
    assert await blobs.size(key) == len(data)
    back = hashlib.sha256()
    async for chunk in blobs.get(key):
        assert len(chunk) <= 1 << 20
        back.update(chunk)
    assert back.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_over_the_cap_keeps_nothing(blobs: BlobStore) -> None:
    key = new_blob_key("files", "tn_a", "file-4")
    with pytest.raises(BlobTooLarge):
        await blobs.put(key, _chunks(os.urandom(6 * 1024 * 1024), 1 << 20), max_bytes=5 * 1024 * 1024 + 1)
    assert await blobs.size(key) is None

    # A failing source (the client went away) keeps nothing either.
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise ConnectionResetError("client gone")

    with pytest.raises(ConnectionResetError):
        await blobs.put(key, broken())
    assert await blobs.size(key) is None


async def test_keys_are_checked(blobs: BlobStore) -> None:
    for bad in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(ValueError):
            await blobs.put(bad, _chunks(b"x"))


async def test_local_store_sweeps_partials(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    (tmp_path / "files").mkdir()
    partial = tmp_path / "files" / "x.abcd.partial"
    partial.write_bytes(b"half")
    await store.start()
    assert not partial.exists()
