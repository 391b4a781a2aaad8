"""What the gateway reads or adds to a request's bytes on their way upstream, and reads of the answer."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.protocol.common import StreamOptions


def asking_for_usage(body: bytes, options: StreamOptions | None) -> bytes:
    """The client's bytes with `stream_options.include_usage` set. The key is appended: JSON
    parsers keep the last of a repeated key, and every other byte stays as the client sent it."""
    wanted: dict[str, Any] = options.model_dump(exclude_none=True) if options is not None else {}
    wanted["include_usage"] = True
    trimmed = body.rstrip()
    return trimmed[:-1] + b',"stream_options":' + orjson.dumps(wanted) + b"}"


def with_field(body: bytes, name: str, value: object) -> bytes:
    """The client's bytes with `name` set to `value`, appended as `asking_for_usage` does."""
    return body.rstrip()[:-1] + b',"' + name.encode() + b'":' + orjson.dumps(value) + b"}"


def usage_of(answer: bytes) -> dict[str, Any] | None:
    try:
        usage = orjson.loads(answer).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None
