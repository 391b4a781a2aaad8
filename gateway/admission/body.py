"""A request's JSON body: read within its size limit, parsed, and validated against OpenAI's schema."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.protocol import InvalidParam, parse_request
from gateway.protocol.validation import RequestT


async def read_request_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The API expects a JSON object; "
            "check that the body is valid JSON and that Content-Type is application/json."
        ) from None


def validate(schema: type[RequestT], payload: Any) -> RequestT:
    """`payload` as `schema`, or OpenAI's 400 naming the first offending field."""
    try:
        return parse_request(schema, payload)
    except InvalidParam as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
