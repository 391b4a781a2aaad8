"""What a realtime session's parts share: ids, the way out for server events, and the error a
client event can end in."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
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
