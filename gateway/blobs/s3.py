"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...), through aiobotocore: for several
replicas on several hosts. A put of up to one part is a PutObject; a longer one a multipart upload,
its parts sent as they fill (at most one part held in memory) and aborted on any failure."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from gateway.blobs.interface import READ_CHUNK, check_key, counted

# S3 refuses parts under 5 MiB but the last.
MIN_PART_BYTES = 5 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Options:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    part_bytes: int = 8 * 1024 * 1024
    # Path-style URLs (`endpoint/bucket/key`), as MinIO and most S3-compatible servers want.
    path_style: bool = True


class S3BlobStore:
    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._part_bytes = max(options.part_bytes, MIN_PART_BYTES)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        # Here: aiobotocore takes 0.2-0.3 s to import, paid by gateways whose blobs are in S3 only.
        from aiobotocore.session import get_session
        from botocore.config import Config

        options = self.options
        session = get_session()
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=options.endpoint_url,
                region_name=options.region,
                aws_access_key_id=options.access_key_id,
                aws_secret_access_key=options.secret_access_key,
                config=Config(
                    s3={"addressing_style": "path" if options.path_style else "auto"},
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobStore.start() was not awaited")
        return self._client

    def _key(self, key: str) -> str:
        return self.options.prefix + check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> int:
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        name = self._key(key)
        bucket = self.options.bucket
        try:
            async for chunk in counted(chunks, max_bytes):
                buffer += chunk
                size += len(chunk)
                while len(buffer) >= self._part_bytes:
                    if upload_id is None:
                        started = await self.client.create_multipart_upload(Bucket=bucket, Key=name)
                        upload_id = started["UploadId"]
                    part, buffer = bytes(buffer[: self._part_bytes]), buffer[self._part_bytes :]
                    parts.append(await self._upload_part(name, upload_id, len(parts) + 1, part))
            if upload_id is None:
                await self.client.put_object(Bucket=bucket, Key=name, Body=bytes(buffer))
                return size
            if buffer:
                parts.append(await self._upload_part(name, upload_id, len(parts) + 1, bytes(buffer)))
            await self.client.complete_multipart_upload(
                Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self.client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
            raise
        return size

    async def _upload_part(self, name: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        answer = await self.client.upload_part(
            Bucket=self.options.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def get(self, key: str) -> AsyncIterator[bytes]:
        try:
            answer = await self.client.get_object(Bucket=self.options.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise KeyError(key) from None
            raise
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk

    async def size(self, key: str) -> int | None:
        try:
            answer = await self.client.head_object(Bucket=self.options.bucket, Key=self._key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return int(answer["ContentLength"])

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a key that is not there too.
        await self.client.delete_object(Bucket=self.options.bucket, Key=self._key(key))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
