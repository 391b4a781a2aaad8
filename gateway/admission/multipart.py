"""A multipart body read part by part as it arrives (python-multipart's push parser): small fields
as strings, a file part as a stream of its bytes that the caller writes on (to the blob store), so a
file of any size is never held whole, in memory or in a temporary file.

    form = MultipartStream(request, limit=..., too_large=lambda: PayloadTooLarge(...))
    async for part in form.parts():
        if isinstance(part, FilePart):
            await blobs.put(key, part.chunks)     # read it before the next part
        else:
            fields[part.name] = part.value

`limit` bounds the whole body: a declared Content-Length above it is refused before a byte is read,
and a body that passes it while arriving (chunked, or lying) is refused at that byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from gateway.errors import APIError, InvalidRequest
from gateway.http.disconnect import ClientGone

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 32


@dataclass(frozen=True)
class Field:
    name: str
    value: str


@dataclass(frozen=True)
class FilePart:
    name: str
    filename: str
    content_type: str | None
    # The part's bytes as they arrive; consume them before asking for the next part.
    chunks: AsyncIterator[bytes]


Event = tuple[Any, ...]


class MultipartStream:
    def __init__(self, request: Request, *, limit: int, too_large: Callable[[], APIError]) -> None:
        kind = request.headers.get("content-type", "")
        media, options = parse_options_header(kind)
        boundary = options.get(b"boundary")
        if media != b"multipart/form-data" or not boundary:
            raise InvalidRequest(
                "This endpoint takes multipart/form-data (the file in a `file` part); "
                f"the request's Content-Type is {kind or 'missing'}.",
                code="invalid_content_type",
            )
        declared = request.headers.get("content-length", "")
        # The body's declared length (an upper bound of any part's size), when it has one.
        self.declared = int(declared) if declared.isdigit() else None
        if self.declared is not None and self.declared > limit:
            raise too_large()
        self._request = request
        self._limit = limit
        self._too_large = too_large
        self._events: list[Event] = []
        self._headers: dict[bytes, bytes] = {}
        self._header = [b"", b""]
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._headers.clear,
                "on_header_field": lambda data, start, end: self._grow(0, data[start:end]),
                "on_header_value": lambda data, start, end: self._grow(1, data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": lambda data, start, end: self._events.append(
                    ("data", bytes(data[start:end]))
                ),
                "on_part_end": lambda: self._events.append(("end",)),
            },
        )

    def _grow(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_end(self) -> None:
        self._headers[self._header[0].lower()] = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        kind = self._headers.get(b"content-type")
        self._events.append(
            (
                "begin",
                name,
                None if filename is None else filename.decode("utf-8", "replace"),
                None if kind is None else kind.decode("latin-1"),
            )
        )

    async def _parsed(self) -> AsyncIterator[Event]:
        seen = 0
        try:
            async for chunk in self._request.stream():
                seen += len(chunk)
                if seen > self._limit:
                    raise self._too_large()
                self._parser.write(chunk)
                events, self._events = self._events, []
                for event in events:
                    yield event
            self._parser.finalize()
        except MultipartParseError as exc:
            raise InvalidRequest(f"The multipart body could not be read: {exc}") from None
        except ClientDisconnect:
            raise ClientGone() from None
        for event in self._events:
            yield event

    async def parts(self) -> AsyncIterator[Field | FilePart]:
        events = self._parsed()
        count = 0
        async for event in events:
            if event[0] != "begin":
                continue  # the rest of a file part its reader left unread
            count += 1
            if count > MAX_PARTS:
                raise InvalidRequest(f"The multipart body has more than {MAX_PARTS} parts.")
            _, name, filename, kind = event
            if filename is None:
                yield Field(name, await _field_value(name, events))
            else:
                yield FilePart(name, filename, kind, _file_bytes(events))


async def _field_value(name: str, events: AsyncIterator[Event]) -> str:
    value = bytearray()
    async for event in events:
        if event[0] == "end":
            break
        value += event[1]
        if len(value) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"The form field `{name}` is longer than {MAX_FIELD_BYTES} bytes.", param=name
            )
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"The form field `{name}` is not UTF-8.", param=name) from None


async def _file_bytes(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    async for event in events:
        if event[0] == "end":
            return
        if event[0] == "data" and event[1]:
            yield event[1]
