"""A multipart upload (a file and its form fields) read within its size limit as it arrives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from gateway.errors import InvalidRequest, PayloadTooLarge


async def read_upload(
    request: Request,
    limit: int,
    *,
    list_fields: tuple[str, ...] = (),
    max_field_bytes: int = 1024 * 1024,
    file_field: str = "file",
) -> tuple[bytes, dict[str, Any]]:
    """The `file` part's (or `file_field`'s) bytes and the string fields; fields named in
    `list_fields` (with or without `[]`) are lists. 400 for a body that is not multipart or has no
    file, or a field over `max_field_bytes`; 413 past `limit`."""
    kind = request.headers.get("content-type", "")
    if not kind.lower().startswith("multipart/form-data"):
        raise InvalidRequest(
            f"This endpoint takes multipart/form-data (the audio in a `{file_field}` part); "
            f"the request's Content-Type is {kind or 'missing'}.",
            code="invalid_content_type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    capped = Request(request.scope, _capped(request.receive, limit))
    try:
        form = await capped.form(max_files=1, max_fields=32, max_part_size=max_field_bytes)
    except MultiPartException as exc:
        raise InvalidRequest(f"The multipart body could not be read: {exc.message}") from None
    try:
        upload = form.get(file_field)
        if not isinstance(upload, UploadFile):
            raise InvalidRequest(
                f"Missing required parameter: '{file_field}' (the audio, as a file part).",
                param=file_field,
            )
        data = await upload.read()
        values: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name == file_field or not isinstance(value, str):
                continue
            bare = name.removesuffix("[]")
            if bare in list_fields:
                values.setdefault(bare, []).append(value)
            else:
                values[name] = value
    finally:
        await form.close()
    return data, values


def _capped(receive: Callable[[], Awaitable[Message]], limit: int) -> Callable[[], Awaitable[Message]]:
    """The request's receive, refusing the body once it passes `limit` bytes (a chunked upload
    that declared no length is stopped as it arrives, not after)."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return receive_capped


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {limit} bytes.", param="file", code="file_too_large"
    )
