"""OpenAI's rate-limit headers, spelt as the OpenAI SDKs read them.

An admitted request shows, per dimension, the tightest of its scopes' limits: `x-ratelimit-limit-*`,
`x-ratelimit-remaining-*` and `x-ratelimit-reset-*` (the time until the window frees room, in
OpenAI's `1.5s` / `6m0s` spelling). A refused one carries `retry-after` (whole seconds) and
`retry-after-ms`, which the SDKs wait for before they retry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from gateway.limits.checks import Check, ScopeCheck

# The limits that have headers, by the name OpenAI gives their dimension. Concurrency and budgets
# have none of their own.
DIMENSIONS: Final[Mapping[Check, str]] = MappingProxyType(
    {Check.RPM: "requests", Check.TPM: "tokens", Check.AUDIO: "audio-seconds"}
)


def shown(kind: Check, value: int) -> int:
    """A counter's value as a client reads it: audio is counted in milliseconds, shown in whole
    seconds."""
    return value // 1000 if kind is Check.AUDIO else value


def ratelimit_headers(dimension: str, limit: int, remaining: int, reset_ms: int | None) -> dict[str, str]:
    """One dimension's x-ratelimit-* headers (without a reset when `reset_ms` is None)."""
    headers = {
        f"x-ratelimit-limit-{dimension}": str(limit),
        f"x-ratelimit-remaining-{dimension}": str(max(0, remaining)),
    }
    if reset_ms is not None:
        headers[f"x-ratelimit-reset-{dimension}"] = format_duration(reset_ms)
    return headers


def admitted_headers(checks: Sequence[ScopeCheck], values: Sequence[int]) -> dict[str, str]:
    """The headers of an admitted request, from the tightest of the key's and the tenant's limits.
    `values` are the reserve script's remaining amount and reset time of each check, in order."""
    tightest: dict[str, tuple[int, int, int]] = {}
    for i, check in enumerate(checks):
        dimension = DIMENSIONS.get(check.kind)
        if dimension is None:
            continue
        remaining, reset = shown(check.kind, int(values[2 * i])), int(values[2 * i + 1])
        if dimension not in tightest or remaining < tightest[dimension][1]:
            tightest[dimension] = (shown(check.kind, check.limit), remaining, reset)
    headers: dict[str, str] = {}
    for dimension, (limit, remaining, reset) in tightest.items():
        headers.update(ratelimit_headers(dimension, limit, remaining, reset))
    return headers


def retry_headers(retry_ms: int) -> dict[str, str]:
    """When to try again: at least a millisecond, and `retry-after` rounded up to whole seconds."""
    retry_ms = max(1, int(retry_ms))
    return {"retry-after": str(max(1, math.ceil(retry_ms / 1000))), "retry-after-ms": str(retry_ms)}


def format_duration(ms: int) -> str:
    """OpenAI's reset spelling: `120ms`, `1.5s`, `6m0s`."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest}s"
