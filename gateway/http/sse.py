"""Server-sent events as OpenAI frames them: `data: <json>` and a blank line; `data: [DONE]` last."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

EVENT_END = b"\n\n"
DONE = b"data: [DONE]" + EVENT_END
# What every SSE answer carries: no caching, and no buffering by nginx in front of the gateway.
SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def sse_event(payload: dict[str, Any] | BaseModel) -> bytes:
    """One `data:` event holding `payload` as JSON."""
    body = payload.model_dump() if isinstance(payload, BaseModel) else payload
    return b"data: " + orjson.dumps(body) + EVENT_END
