"""The streamed multipart reader on its own: parts as they arrive whatever the chunking, fields before
or after the file, the body limit from Content-Length (before any byte) or while it arrives, and
malformed bodies as OpenAI's 400."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import Request

from gateway.admission.multipart import MAX_FIELD_BYTES, Field, FilePart, MultipartStream
from gateway.errors import InvalidRequest, PayloadTooLarge

BOUNDARY = "b0undary"


def _body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _request(body: bytes, chunk: int, *, declared: int | None = None) -> tuple[Request, list[int]]:
    """A request whose body arrives `chunk` bytes at a time; the list counts the chunks read."""
    pieces = [body[start : start + chunk] for start in range(0, len(body), chunk)] or [b""]
    read: list[int] = []

    async def receive() -> dict[str, object]:
        index = len(read)
        read.append(index)
        return {"type": "http.request", "body": pieces[index], "more_body": index + 1 < len(pieces)}

    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/files", "headers": headers}
    receive_fn: Callable[[], Awaitable[dict[str, object]]] = receive
    return Request(scope, receive_fn), read


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge("too large", code="file_too_large")


async def _collect(form: MultipartStream) -> list[tuple[str, str | bytes]]:
    seen: list[tuple[str, str | bytes]] = []
    async for part in form.parts():
        if isinstance(part, FilePart):
            seen.append((part.name, b"".join([chunk async for chunk in part.chunks])))
        else:
            assert isinstance(part, Field)
            seen.append((part.name, part.value))
    return seen


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
async def test_parts_whatever_the_chunking(chunk: int) -> None:
    data = bytes(range(256)) * 40 + f"\r\n--{BOUNDARY}".encode()[:-1]  # bytes that almost close the part
    body = _body(("purpose", None, b"batch"), ("file", "a.bin", data), ("after", None, "é".encode()))
    request, _ = _request(body, chunk)
    form = MultipartStream(request, limit=len(body), too_large=_too_large)
    assert await _collect(form) == [("purpose", "batch"), ("file", data), ("after", "é")]


async def test_declared_length_refused_before_reading() -> None:
    request, read = _request(_body(("file", "a", b"x")), 10, declared=10 * 1024**3)
    with pytest.raises(PayloadTooLarge):
        MultipartStream(request, limit=1024, too_large=_too_large)
    assert read == []


async def test_undeclared_length_refused_as_it_arrives() -> None:
    body = _body(("file", "a", b"x" * 10_000))
    request, read = _request(body, 1000)
    form = MultipartStream(request, limit=4000, too_large=_too_large)
    with pytest.raises(PayloadTooLarge):
        await _collect(form)
    assert len(read) == 5  # the fifth chunk passed 4000 bytes: nothing after it was read


async def test_bad_bodies_are_400() -> None:
    request, _ = _request(b"not multipart at all", 100)
    with pytest.raises(InvalidRequest):
        await _collect(MultipartStream(request, limit=1000, too_large=_too_large))
    long_field = _body(("purpose", None, b"x" * (MAX_FIELD_BYTES + 1)))
    request, _ = _request(long_field, 4096)
    with pytest.raises(InvalidRequest) as refused:
        await _collect(MultipartStream(request, limit=len(long_field), too_large=_too_large))
    assert refused.value.param == "purpose"
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", b"application/json")],
    }
    with pytest.raises(InvalidRequest) as refused:
        MultipartStream(Request(scope), limit=10, too_large=_too_large)
    assert refused.value.code == "invalid_content_type"
