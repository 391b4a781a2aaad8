"""What a realtime session's parts share: ids, the way out for server events, and the error a
client event can end in."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

_log = logging.getLogger("tantra.realtime")

Emit = Callable[[dict[str, Any]], Awaitable[None]]
"""Sends one server event to the client (the session's `emit`)."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class EventError(Exception):
    """A client event that cannot be carried out: becomes an `error` event, the session goes on."""

    def __init__(
        self, message: str, *, code: str, param: str | None = None, kind: str = "invalid_request_error"
    ):
        super().__init__(message)
        self.message, self.code, self.param, self.kind = message, code, param, kind


def failure_of(payload: Any, status: int) -> EventError:
    """An HTTP error envelope from the loopback, as the `error` event of the same error."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return EventError(f"The gateway answered {status}.", code="server_error", kind="server_error")
    return EventError(
        str(error.get("message", "")),
        code=str(error.get("code") or error.get("type") or "server_error"),
        param=error.get("param"),
        kind=str(error.get("type") or "invalid_request_error"),
    )


def unexpected(exc: Exception) -> EventError:
    _log.error("realtime response failed", exc_info=exc)
    return EventError(
        "The server had an error while processing the response.", code="server_error", kind="server_error"
    )


_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?(?:(\d+)ms)?")


def reset_seconds(spelt: str) -> float | None:
    """OpenAI's reset spelling (`120ms`, `1.5s`, `6m0s`, `1h2m3s`) in seconds."""
    match = _DURATION.fullmatch(spelt.strip())
    if match is None or not spelt.strip():
        return None
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0) + int(millis or 0) / 1000


def rate_limits_event(headers: Mapping[str, str]) -> dict[str, Any]:
    """`rate_limits.updated` from a response's `x-ratelimit-*` headers (the limiter's view once the
    response's tokens are reserved, as OpenAI's event shows); an empty list when the key has no
    request or token limit."""
    limits = []
    for name in ("requests", "tokens"):
        limit, remaining = (
            headers.get(f"x-ratelimit-limit-{name}"),
            headers.get(f"x-ratelimit-remaining-{name}"),
        )
        if limit is None or remaining is None or not limit.isdigit() or not remaining.isdigit():
            continue
        reset = headers.get(f"x-ratelimit-reset-{name}")
        limits.append(
            {
                "name": name,
                "limit": int(limit),
                "remaining": int(remaining),
                "reset_seconds": reset_seconds(reset) if reset else 0.0,
            }
        )
    return {"type": "rate_limits.updated", "rate_limits": limits}
