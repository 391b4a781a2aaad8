"""Errors: the openai SDK's own classes, which carry OpenAI's envelope (`{"error": {"message",
"type", "param", "code"}}`) that Tantra answers with: `.status_code`, `.message`, `.type`,
`.param`, `.code`, `.body` (the inner error object) and `.response` (its headers)."""

from __future__ import annotations

from openai import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

TantraError = APIStatusError
"""Any error answer of the gateway (4xx, 5xx)."""


def retry_after(error: APIStatusError) -> float | None:
    """Seconds the gateway asked to wait (`retry-after-ms`, else `Retry-After`), or None."""
    headers = error.response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (seconds := headers.get("retry-after")) is not None:
        try:
            return float(seconds)
        except ValueError:
            return None
    return None


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "TantraError",
    "UnprocessableEntityError",
    "retry_after",
]
