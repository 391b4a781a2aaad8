"""The Files API: /v1/files (upload, list), /v1/files/{id} (retrieve, delete) and its content.

An upload is streamed from the multipart body straight into the blob store (never whole in memory
or on a temporary disk), counted against the per-file cap and the tenant's storage quota as it
arrives. Every query names the caller's tenant: another tenant's id is OpenAI's 404.

Crash consistency: the row is written (`uploading`) before the blob and marked `processed` after
it; a deletion marks the row `deleting` (a tombstone: gone for the API at once) before the blob is
deleted, and removes the row last. A crash at any point leaves a row that says which blob may be
left over; `FileSweeper` (gateway/services/file_sweeper.py) finishes the job.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.admission import Outcome, Ticket
from gateway.admission.multipart import MAX_FIELD_BYTES, MAX_PARTS, Field, FilePart, MultipartStream
from gateway.blobs import BlobStore, BlobTooLarge, new_blob_key
from gateway.errors import APIError, InvalidRequest
from gateway.protocol.files import MAX_EXPIRY_S, MIN_EXPIRY_S, PURPOSES, FileDeleted, FileList
from gateway.services.stored import StoredObjects, answer, file_object, no_such
from gateway.store import Owner, utcnow
from gateway.store.file_models import StoredFile
from gateway.store.files import UPLOADING, object_id

_log = logging.getLogger("tantra.files")
# Room for the multipart framing and the form fields around the file.
FORM_OVERHEAD = MAX_PARTS * MAX_FIELD_BYTES + 64 * 1024
MAX_LIST = 10_000
# OpenAI's default: files for batches expire after 30 days unless asked otherwise.
BATCH_EXPIRY = timedelta(days=30)
# Takes deleted files out of every vector store holding them (VectorCore.forget_files).
ForgetFiles = Callable[[Collection[str]], Awaitable[int]]


class FilesService:
    def __init__(self, objects: StoredObjects, blobs: BlobStore) -> None:
        self._objects = objects
        self._files = objects.files
        self._blobs = blobs
        # Set when the vector stores API is served (gateway/vector_setup.py).
        self.forget: ForgetFiles | None = None

    # POST /v1/files ----------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/files") as ticket:
            owner = self._objects.owner(ticket)
            now = utcnow()
            cap, too_large = await self._objects.cap(
                owner.tenant_id, now, self._objects.limits.max_file_bytes
            )
            form = MultipartStream(request, limit=cap + FORM_OVERHEAD, too_large=too_large)
            fields: dict[str, str] = {}
            row: StoredFile | None = None
            try:
                async for part in form.parts():
                    if isinstance(part, Field):
                        fields[part.name] = part.value
                        _early_check(part)
                    elif part.name != "file" or row is not None:
                        raise InvalidRequest("Only one file, in the `file` part, is taken.", param="file")
                    else:
                        row = await self._store(owner, part, now, (cap, form.declared), too_large)
                if row is None:
                    raise InvalidRequest("Missing required parameter: 'file'.", param="file")
                purpose, expires_at = _form_fields(fields, now)
            except BaseException:
                if row is not None:
                    await self._discard(row)
                raise
            saved = await self._files.finish_file(
                row.id, size=row.bytes, changes={"purpose": purpose, "expires_at": expires_at}
            )
            return answer(ticket, file_object(saved).model_dump())

    async def _store(
        self,
        owner: Owner,
        part: FilePart,
        now: datetime,
        room: tuple[int, int | None],
        too_large: Callable[[], APIError],
    ) -> StoredFile:
        cap, declared = room
        file_id = object_id("file-")
        row = StoredFile(
            id=file_id,
            **owner.columns(),
            filename=(part.filename or "file")[:512],
            purpose="",
            # While it is written the row holds the room the body declared: a tenant's uploads
            # running at once see each other's in its quota (a body of undeclared length holds none).
            bytes=min(declared or 0, cap),
            content_type=(part.content_type or None) and part.content_type[:255],
            blob_key=new_blob_key("files", owner.tenant_id, file_id),
            status=UPLOADING,
            created_at=now,
        )
        await self._files.begin_file(row)
        try:
            row.bytes = await self._blobs.put(row.blob_key, part.chunks, max_bytes=cap)
        except BlobTooLarge:
            await self._files.remove_file(file_id)
            raise too_large() from None
        except BaseException:
            await self._files.remove_file(file_id)
            raise
        return row

    async def _discard(self, row: StoredFile) -> None:
        await self._blobs.delete(row.blob_key)
        await self._files.remove_file(row.id)

    # GET /v1/files -----------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        async with self._objects.enter(request, "/v1/files") as ticket:
            tenant = self._objects.owner(ticket).tenant_id
            now = utcnow()
            query = request.query_params
            limit = _limit(query.get("limit"))
            order = query.get("order", "desc")
            if order not in ("asc", "desc"):
                raise InvalidRequest(f"Invalid value for 'order': {order!r} (asc or desc).", param="order")
            after = None
            if query.get("after"):
                after = await self._files.get_file(tenant, query["after"], now)
                if after is None:
                    raise InvalidRequest(f"No such File object: {query['after']}", param="after")
            purpose = query.get("purpose") or None
            page = await self._files.list_files(
                tenant, now, purpose=purpose, after=after, limit=limit, order=_order(order)
            )
            data = [file_object(row) for row in page.files]
            listing = FileList(
                data=data,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
                has_more=page.has_more,
            )
            return answer(ticket, listing.model_dump())

    # GET and DELETE /v1/files/{id}, GET /v1/files/{id}/content ------------------------------------

    async def retrieve(self, request: Request, file_id: str) -> Response:
        async with self._objects.enter(request, "/v1/files/{file_id}") as ticket:
            row = await self._find(ticket, file_id)
            return answer(ticket, file_object(row).model_dump())

    async def delete(self, request: Request, file_id: str) -> Response:
        async with self._objects.enter(request, "/v1/files/{file_id}") as ticket:
            tenant = self._objects.owner(ticket).tenant_id
            row = await self._files.tombstone(tenant, file_id, utcnow())
            if row is None:
                raise no_such("File", file_id)
            try:
                if self.forget is not None:  # out of its vector stores first, as OpenAI's
                    await self.forget([row.id])
                await self._blobs.delete(row.blob_key)
                await self._files.remove_file(row.id)
            except Exception:
                # The tombstone is committed: the file is gone for the API, the sweeper retries
                # (the stores included).
                _log.exception("file %s: its blob could not be deleted yet", file_id)
            return answer(ticket, FileDeleted(id=file_id).model_dump())

    async def content(self, request: Request, file_id: str) -> Response:
        async with self._objects.enter(request, "/v1/files/{file_id}/content") as ticket:
            row = await self._find(ticket, file_id)
            chunks = self._blobs.get(row.blob_key)
            try:
                first = await anext(chunks, b"")
            except KeyError:
                raise APIError(f"The bytes of {file_id} are missing from the blob store.") from None
            ticket.defer()
            return StreamingResponse(
                _relay(first, chunks, ticket),
                media_type=row.content_type or "application/octet-stream",
                headers={
                    **ticket.limit_headers,
                    "content-length": str(row.bytes),
                    "content-disposition": _disposition(row.filename),
                },
            )

    async def _find(self, ticket: Ticket, file_id: str) -> StoredFile:
        tenant = self._objects.owner(ticket).tenant_id
        row = await self._files.get_file(tenant, file_id, utcnow())
        if row is None:
            raise no_such("File", file_id)
        return row


async def _relay(first: bytes, chunks: AsyncIterator[bytes], ticket: Ticket) -> AsyncIterator[bytes]:
    outcome = Outcome.CLIENT_CLOSED
    try:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk
        outcome = Outcome.COMPLETED
    except Exception:
        outcome = Outcome.FAILED
        raise
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
        ticket.settle(outcome)


def _disposition(filename: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename*=UTF-8''{quote(filename)}"


def _early_check(field: Field) -> None:
    """A bad purpose sent before the file is refused before the file is read."""
    if field.name == "purpose" and field.value not in PURPOSES:
        raise _bad_purpose(field.value)


def _bad_purpose(value: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid value for 'purpose': {value!r}. Supported values are: {', '.join(PURPOSES)}.",
        param="purpose",
    )


def _form_fields(fields: dict[str, str], now: datetime) -> tuple[str, datetime | None]:
    purpose = fields.get("purpose")
    if purpose is None:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in PURPOSES:
        raise _bad_purpose(purpose)
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return purpose, now + BATCH_EXPIRY if purpose == "batch" else None
    return purpose, now + timedelta(seconds=expiry_seconds(anchor, seconds))


def expiry_seconds(anchor: str | None, seconds: str | int | None) -> int:
    """`expires_after`: anchor `created_at`, seconds from one hour to thirty days."""
    if anchor != "created_at":
        raise InvalidRequest(
            f"Invalid value for 'expires_after.anchor': {anchor!r} (only 'created_at').",
            param="expires_after.anchor",
        )
    try:
        value = int(seconds) if seconds is not None else None
    except ValueError:
        value = None
    if value is None or not MIN_EXPIRY_S <= value <= MAX_EXPIRY_S:
        raise InvalidRequest(
            f"Invalid value for 'expires_after.seconds': {seconds!r} (an integer from {MIN_EXPIRY_S} "
            f"to {MAX_EXPIRY_S}).",
            param="expires_after.seconds",
        )
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return MAX_LIST
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
        raise InvalidRequest(
            f"Invalid value for 'limit': {raw!r} (an integer from 1 to {MAX_LIST}).", param="limit"
        )
    return int(raw)


def _order(value: str) -> Literal["asc", "desc"]:
    return "asc" if value == "asc" else "desc"


__all__ = ["FORM_OVERHEAD", "FilesService", "expiry_seconds"]
