"""The Uploads API, for files larger than one request should carry: /v1/uploads (create),
/v1/uploads/{id}/parts (each part a blob of its own), /complete (the parts joined, streamed, into
the file's blob; its md5 checked when given) and /cancel.

An upload may take parts for an hour (OpenAI's), then expires; the sweeper deletes the parts of
expired and cancelled uploads. Completion moves the upload `pending` -> `completing` first (one
caller wins), so two concurrent completions cannot make two files.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Ticket
from gateway.admission.multipart import FilePart, MultipartStream
from gateway.blobs import BlobStore, BlobTooLarge, new_blob_key
from gateway.errors import APIError, InvalidRequest
from gateway.protocol.files import CompleteUploadRequest, CreateUploadRequest, UploadObject, UploadPartObject
from gateway.services.files import BATCH_EXPIRY, FORM_OVERHEAD
from gateway.services.stored import StoredObjects, answer, file_object, no_such, quota_exceeded, unix
from gateway.store import utcnow
from gateway.store.file_models import StoredFile, Upload, UploadPart
from gateway.store.files import CANCELLED, COMPLETED, COMPLETING, PENDING, PROCESSED, UPLOADING, object_id

UPLOAD_LIFETIME = timedelta(hours=1)


class UploadsService:
    def __init__(self, objects: StoredObjects, blobs: BlobStore) -> None:
        self._objects = objects
        self._files = objects.files
        self._blobs = blobs

    async def create(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/uploads") as ticket:
            _, _, parsed = await ticket.read_json(CreateUploadRequest)
            limits = self._objects.limits
            if parsed.bytes > limits.max_upload_bytes:
                raise InvalidRequest(
                    f"Invalid value for 'bytes': {parsed.bytes} is over the limit of "
                    f"{limits.max_upload_bytes} bytes for an upload.",
                    param="bytes",
                )
            owner = self._objects.owner(ticket)
            now = utcnow()
            left, _ = await self._objects.cap(owner.tenant_id, now, parsed.bytes)
            if left < parsed.bytes:
                raise quota_exceeded(limits.quota_bytes, left)
            upload = Upload(
                id=object_id("upload_"),
                **owner.columns(),
                filename=parsed.filename,
                purpose=parsed.purpose,
                bytes=parsed.bytes,
                mime_type=parsed.mime_type,
                status=PENDING,
                created_at=now,
                expires_at=now + UPLOAD_LIFETIME,
                file_expires_after_s=parsed.expires_after.seconds if parsed.expires_after else None,
            )
            await self._files.add(upload)
            return answer(ticket, _upload_object(upload, None, now).model_dump())

    async def add_part(self, request: Request, upload_id: str) -> Response:
        async with self._objects.enter(request, "/v1/uploads/{upload_id}/parts") as ticket:
            now = utcnow()
            upload = await self._pending(ticket, upload_id, now)
            cap, too_large = await self._objects.cap(
                upload.tenant_id, now, self._objects.limits.max_part_bytes
            )
            form = MultipartStream(request, limit=cap + FORM_OVERHEAD, too_large=too_large)
            part: UploadPart | None = None
            async for item in form.parts():
                if isinstance(item, FilePart) and item.name == "data" and part is None:
                    part = await self._store_part(upload, item, now, (cap, form.declared), too_large)
            if part is None:
                raise InvalidRequest("Missing required parameter: 'data'.", param="data")
            created = unix(part.created_at)
            assert created is not None
            return answer(
                ticket, UploadPartObject(id=part.id, created_at=created, upload_id=upload.id).model_dump()
            )

    async def _store_part(
        self,
        upload: Upload,
        item: FilePart,
        now: datetime,
        room: tuple[int, int | None],
        too_large: Callable[[], APIError],
    ) -> UploadPart:
        cap, declared = room
        part_id = object_id("part_")
        part = UploadPart(
            id=part_id,
            upload_id=upload.id,
            tenant_id=upload.tenant_id,
            created_by=upload.created_by,
            user=upload.user,
            bytes=min(declared or 0, cap),  # the room it holds while written, as a file's row
            blob_key=new_blob_key("parts", upload.tenant_id, part_id),
            created_at=now,
        )
        # The row first: a crash mid-part leaves a row the sweeper finds with its upload.
        await self._files.add(part)
        try:
            size = await self._blobs.put(part.blob_key, item.chunks, max_bytes=cap)
        except BaseException as exc:
            await self._files.drop_part(part_id)
            if isinstance(exc, BlobTooLarge):
                raise too_large() from None
            raise
        part.bytes = size
        await self._files.set_part_bytes(part_id, size)
        return part

    async def complete(self, request: Request, upload_id: str) -> Response:
        async with self._objects.enter(request, "/v1/uploads/{upload_id}/complete") as ticket:
            _, _, parsed = await ticket.read_json(CompleteUploadRequest)
            now = utcnow()
            upload = await self._pending(ticket, upload_id, now)
            parts = await self._ordered_parts(upload, parsed.part_ids)
            total = sum(part.bytes for part in parts)
            if total != upload.bytes:
                raise InvalidRequest(
                    f"The parts hold {total} bytes; the upload was created for {upload.bytes}.",
                    param="part_ids",
                )
            if not await self._files.move_upload(upload.id, (PENDING,), COMPLETING):
                raise _not_pending(upload.id)
            try:
                row = await self._join(upload, parts, parsed.md5, now)
            except BaseException:
                await self._files.move_upload(upload.id, (COMPLETING,), PENDING)
                raise
            await self._files.move_upload(upload.id, (COMPLETING,), COMPLETED, file_id=row.id)
            upload.status = COMPLETED
            await self._drop_parts(upload.id)
            return answer(ticket, _upload_object(upload, row, now).model_dump())

    async def _join(
        self, upload: Upload, parts: Sequence[UploadPart], md5: str | None, now: datetime
    ) -> StoredFile:
        file_id = object_id("file-")
        row = StoredFile(
            id=file_id,
            tenant_id=upload.tenant_id,
            created_by=upload.created_by,
            user=upload.user,
            filename=upload.filename,
            purpose=upload.purpose,
            bytes=0,
            content_type=upload.mime_type,
            blob_key=new_blob_key("files", upload.tenant_id, file_id),
            status=UPLOADING,
            created_at=now,
            expires_at=_file_expiry(upload, now),
        )
        await self._files.begin_file(row)
        digest = hashlib.md5(usedforsecurity=False)
        try:
            size = await self._blobs.put(row.blob_key, self._joined(parts, digest))
            if md5 is not None and md5.lower() != digest.hexdigest():
                raise InvalidRequest(
                    f"The md5 of the joined parts is {digest.hexdigest()}, not {md5}.", param="md5"
                )
        except BaseException:
            await self._blobs.delete(row.blob_key)
            await self._files.remove_file(file_id)
            raise
        return await self._files.finish_file(file_id, size=size, changes={"status": PROCESSED})

    async def _joined(self, parts: Sequence[UploadPart], digest: Any) -> AsyncIterator[bytes]:
        for part in parts:
            async for chunk in self._blobs.get(part.blob_key):
                digest.update(chunk)
                yield chunk

    async def cancel(self, request: Request, upload_id: str) -> Response:
        async with self._objects.enter(request, "/v1/uploads/{upload_id}/cancel") as ticket:
            now = utcnow()
            upload = await self._pending(ticket, upload_id, now, expired_ok=True)
            if not await self._files.move_upload(upload.id, (PENDING,), CANCELLED):
                raise _not_pending(upload.id)
            upload.status = CANCELLED
            await self._drop_parts(upload.id)
            return answer(ticket, _upload_object(upload, None, now).model_dump())

    async def _drop_parts(self, upload_id: str) -> None:
        """Delete the upload's parts, blobs first; what a failure leaves, the sweeper finds."""
        for part in await self._files.parts(upload_id):
            await self._blobs.delete(part.blob_key)
        await self._files.drop_parts(upload_id)

    async def _pending(
        self, ticket: Ticket, upload_id: str, now: datetime, *, expired_ok: bool = False
    ) -> Upload:
        upload = await self._files.get_upload(self._objects.owner(ticket).tenant_id, upload_id)
        if upload is None:
            raise no_such("Upload", upload_id)
        if upload.status != PENDING:
            raise _not_pending(upload_id, upload.status)
        if upload.expires_at <= now and not expired_ok:
            raise InvalidRequest(f"Upload {upload_id} has expired.", param="id", code="upload_expired")
        return upload

    async def _ordered_parts(self, upload: Upload, part_ids: Sequence[str]) -> list[UploadPart]:
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("`part_ids` names a part twice.", param="part_ids")
        found = {part.id: part for part in await self._files.parts(upload.id, part_ids)}
        missing = [part_id for part_id in part_ids if part_id not in found]
        if missing:
            raise InvalidRequest(
                f"No such part of upload {upload.id}: {', '.join(missing[:5])}.", param="part_ids"
            )
        return [found[part_id] for part_id in part_ids]


def _not_pending(upload_id: str, status: str | None = None) -> InvalidRequest:
    state = f" (it is {status})" if status else ""
    return InvalidRequest(f"Upload {upload_id} is not pending{state}.", param="id", code="upload_not_pending")


def _file_expiry(upload: Upload, now: datetime) -> datetime | None:
    if upload.file_expires_after_s is not None:
        return now + timedelta(seconds=upload.file_expires_after_s)
    return now + BATCH_EXPIRY if upload.purpose == "batch" else None


def _upload_object(upload: Upload, row: StoredFile | None, now: datetime) -> UploadObject:
    status = upload.status
    if status == PENDING and upload.expires_at <= now:
        status = "expired"
    elif status == COMPLETING:
        status = PENDING
    created, expires = unix(upload.created_at), unix(upload.expires_at)
    assert created is not None and expires is not None
    return UploadObject(
        id=upload.id,
        bytes=upload.bytes,
        created_at=created,
        expires_at=expires,
        filename=upload.filename,
        purpose=upload.purpose,
        status=status,
        file=file_object(row) if row is not None else None,
    )
