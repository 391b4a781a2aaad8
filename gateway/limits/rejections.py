"""The 429 a refused request gets: OpenAI's wording and headers, so SDKs and people read it alike.

A window that is full says when to retry (`retry-after`, `retry-after-ms`). A request larger than the
limit itself, or a budget used up, says `x-should-retry: false`: waiting would not help, and the
OpenAI SDKs honour that header. Each error names the limit that refused and its scope, for metrics.
"""

from __future__ import annotations

from types import MappingProxyType

from gateway.errors import QuotaExceeded, RateLimited
from gateway.limits.checks import Check, Demand, ScopeCheck
from gateway.limits.headers import DIMENSIONS, format_duration, ratelimit_headers, retry_headers, shown
from gateway.limits.scripts import Verdict

_PERIODLY = MappingProxyType({"day": "daily", "month": "monthly"})
_NO_RETRY = MappingProxyType({"x-should-retry": "false"})


def rejection(
    verdict: Verdict, check: ScopeCheck, retry_ms: int, demand: Demand
) -> RateLimited | QuotaExceeded:
    """The error for a request that `check` refused with `verdict`, `retry_ms` before it could fit."""
    who = f"{check.scope.kind} {check.scope.id}"
    error: RateLimited | QuotaExceeded
    if check.kind is Check.BUDGET:
        error = _quota(verdict, check, who)
    elif check.kind is Check.AUDIO:
        error = _audio(verdict, check, retry_ms, who)
    elif check.kind is Check.SESSIONS:
        error = _sessions(check, who)
    elif verdict is Verdict.TOO_LARGE:
        error = _too_large(check, demand, who)
    else:
        error = _over(check, retry_ms, who)
    error.limit, error.scope = check.kind.value, check.scope.kind
    return error


def _quota(verdict: Verdict, check: ScopeCheck, who: str) -> QuotaExceeded:
    """A budget refuses until its period ends."""
    what = "spend (USD)" if check.spend else "tokens"
    if verdict is Verdict.TOO_LARGE:
        message = f"This request alone ({check.amount} estimated) exceeds the {what} budget for {who}."
    else:
        limit = check.limit / 1_000_000 if check.spend else check.limit
        period = _PERIODLY[check.scope.limits.budget_period]
        message = (
            f"You exceeded your current quota: the {period} {what} budget of {limit:g} for {who} is used up."
        )
    return QuotaExceeded(message, headers=dict(_NO_RETRY))


def _too_large(check: ScopeCheck, demand: Demand, who: str) -> RateLimited:
    """More tokens than the window holds (or a zero RPM / concurrency limit): no wait helps."""
    message = (
        f"Request too large for {who} on tokens per window: Limit {check.limit}, Requested "
        f"{demand.tokens}. Lower max_tokens or the prompt."
    )
    error = RateLimited(message, headers=dict(_NO_RETRY))
    error.type = "tokens"
    return error


def _over(check: ScopeCheck, retry_ms: int, who: str) -> RateLimited:
    """A full window (RPM, TPM) or every concurrency slot taken: try again in `retry_ms`."""
    if check.kind is Check.CONCURRENCY:
        seconds = max(0.001, retry_ms / 1000)
        message = (
            f"Too many concurrent requests for {who}: Limit {check.limit}. Please try again in {seconds:g}s."
        )
    else:
        message = (
            f"Rate limit reached for {who} on {DIMENSIONS[check.kind]} per window: Limit {check.limit}, "
            f"Requested {check.amount}. Please try again in {format_duration(retry_ms)}."
        )
    headers = retry_headers(retry_ms)
    if check.kind in DIMENSIONS:
        headers.update(ratelimit_headers(DIMENSIONS[check.kind], check.limit, 0, retry_ms))
    error = RateLimited(message, headers=headers)
    error.type = DIMENSIONS.get(check.kind, "requests")
    return error


def _sessions(check: ScopeCheck, who: str) -> RateLimited:
    """A key's realtime sessions, counted across replicas: one must close before another opens."""
    return RateLimited(
        f"The {who} has {check.limit} realtime session(s) open, as many as it may; "
        "close one before opening another.",
        code="too_many_realtime_sessions",
        headers={"retry-after": "5"},
    )


def _audio(verdict: Verdict, check: ScopeCheck, retry_ms: int, who: str) -> RateLimited:
    """Audio seconds, counted in milliseconds, told in seconds."""
    limit, asked = shown(Check.AUDIO, check.limit), f"{check.amount / 1000:g}"
    if verdict is Verdict.TOO_LARGE:
        message = (
            f"Request too large for {who} on audio seconds per window: Limit {limit}, Requested "
            f"{asked}. Send shorter audio."
        )
        headers = dict(_NO_RETRY)
        reset_ms: int | None = None
    else:
        message = (
            f"Rate limit reached for {who} on audio seconds per window: Limit {limit}, Requested "
            f"{asked}. Please try again in {format_duration(retry_ms)}."
        )
        headers = retry_headers(retry_ms)
        reset_ms = retry_ms
    headers.update(ratelimit_headers(DIMENSIONS[Check.AUDIO], limit, 0, reset_ms))
    error = RateLimited(message, headers=headers)
    error.type = "audio_seconds"
    return error


def blocked(message: str, *, code: str, seconds: float, limit: str, scope: str) -> RateLimited:
    """The 429 for a subject blocked for `seconds` by a refusal counter (unknown keys from one
    address, refused requests of one key or address): no lookup made, a wait that helps named."""
    error = RateLimited(message, code=code, headers={"retry-after": str(max(1, round(seconds)))})
    error.limit, error.scope = limit, scope
    return error
