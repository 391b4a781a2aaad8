"""The rate limiter: every limit of a request checked and reserved in one Redis round trip.

Limits hold across all replicas that share one Redis. A request reserves up front: one request
against RPM, its estimated prompt plus completion budget against TPM and the token budget, its
estimated cost against the spend budget, and a concurrency slot. When it ends, `settle` replaces
the estimate with the real usage and frees the slot; a failed request settles with what it used.

Audio seconds per window are reserved apart (`reserve_audio`), once a request's audio is decoded and
its length known, before it is transcribed: a request holds then two reservations, settled together.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from gateway.errors import LimiterUnavailable, QuotaExceeded, RateLimited
from gateway.limits import scripts
from gateway.store.records import Limits

_log = logging.getLogger("tantra.limits")

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _slow(exc: BaseException) -> bool:
    """Redis (or a free pooled connection) did not come in time, as opposed to refusing."""
    return isinstance(exc, RedisTimeout | TimeoutError) or "No connection available" in str(exc)


ScopeKind = Literal["key", "tenant"]
CheckKind = Literal["R", "T", "A", "C", "B"]
# (scope kind, scope id, period start) -> (tokens, micro-USD) the ledger holds for that period.
SeedFn = Callable[[ScopeKind, str, datetime], Awaitable[tuple[int, int]]]


@dataclass(frozen=True)
class Scope:
    """A level whose limits apply to a request: the key itself, and its tenant."""

    kind: ScopeKind
    id: str
    limits: Limits


@dataclass(frozen=True)
class Demand:
    """What a request is expected to use, at most: reserved before it runs."""

    tokens: int
    cost_micros: int = 0
    audio_seconds: float = 0.0


@dataclass(frozen=True)
class _Check:
    kind: CheckKind
    scope: Scope
    limit: int
    amount: int
    keys: tuple[str, ...]
    ttl_ms: int = 0
    period_start: datetime | None = None
    spend: bool = False


@dataclass
class Reservation:
    """What one request holds in Redis until it is settled."""

    member: str
    checks: tuple[_Check, ...] = ()
    demand: Demand = Demand(0)
    admitted_at: float = field(default_factory=time.time)
    headers: dict[str, str] = field(default_factory=dict)
    enforced: bool = True
    # Redis did not answer in time: the script may still have run, so the request settles anyway.
    uncertain: bool = False
    settled: bool = False


@dataclass
class LimiterStats:
    """Counters a metrics exporter can read."""

    admitted: int = 0
    rejected: int = 0
    redis_errors: int = 0
    failed_open: int = 0
    failed_closed: int = 0
    settle_errors: int = 0


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        window_s: int,
        lease_s: float,
        failure_mode: Literal["open", "closed"],
        seed: SeedFn,
        retry_redis_after_s: float = 1.0,
        prefix: str = "tantra",
    ) -> None:
        self._redis = redis
        self._window_ms = window_s * 1000
        self._lease_ms = int(lease_s * 1000)
        self.failure_mode = failure_mode
        self._seed = seed
        self._retry_after_s = retry_redis_after_s
        self._prefix = prefix
        self._reserve = redis.register_script(scripts.RESERVE)
        self._settle = redis.register_script(scripts.SETTLE)
        self._down_until = 0.0
        self._slow_answers = 0
        self._last_warning = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = LimiterStats()

    @property
    def redis_ok(self) -> bool:
        return time.monotonic() >= self._down_until

    async def reserve(self, scopes: Sequence[Scope], demand: Demand) -> Reservation:
        """Admit the request or raise RateLimited / QuotaExceeded (or LimiterUnavailable, when
        Redis is down and the policy is `closed`)."""
        return await self._reserve_checks(self._checks(scopes, demand), demand)

    async def reserve_audio(self, scopes: Sequence[Scope], seconds: float) -> Reservation:
        """Reserve `seconds` of audio against each scope's `audio_spm`, or raise RateLimited: a
        reservation of its own, made once a request's audio is decoded (its length known) and
        before it is transcribed."""
        demand = Demand(0, audio_seconds=seconds)
        checks = tuple(
            _Check("A", scope, scope.limits.audio_spm * 1000, _millis(seconds), self._audio_keys(scope))
            for scope in scopes
            if scope.limits.audio_spm is not None
        )
        return await self._reserve_checks(checks, demand)

    async def _reserve_checks(self, checks: tuple[_Check, ...], demand: Demand) -> Reservation:
        member = uuid.uuid4().hex
        if not checks:
            return Reservation(member, demand=demand, enforced=False)
        if not self.redis_ok:
            return self._redis_down(member, demand, None)
        try:
            for _ in range(3):
                result = await self._run_reserve(member, checks)
                if result[0] != -1:
                    break
                await self._seed_budget(checks[int(result[1]) - 1])
        except _REDIS_ERRORS as exc:
            return self._redis_down(member, demand, exc, checks if _slow(exc) else ())
        except Exception as exc:  # the ledger could not seed a budget: the same policy as Redis down
            _log.exception("a budget could not be read from the ledger")
            return self._redis_down(member, demand, exc)
        self._slow_answers = 0
        status, index, retry_ms, now_ms = (int(v) for v in result[:4])
        if status == 1:
            self.stats.admitted += 1
            return Reservation(
                member, checks, demand, admitted_at=now_ms / 1000, headers=_headers(checks, result[4:])
            )
        self.stats.rejected += 1
        raise _rejection(status, checks[index - 1], retry_ms, demand)

    async def settle(
        self, reservation: Reservation, *, tokens: int, cost_micros: int = 0, audio_seconds: float = 0.0
    ) -> None:
        """Replace the estimate with what the request really used and free its slot. Never raises."""
        if reservation.settled or not (reservation.enforced or reservation.uncertain):
            reservation.settled = True
            return
        reservation.settled = True
        keys: list[str] = []
        args: list[str | int] = [reservation.member, 0]
        count = 0
        for check in reservation.checks:
            # A budget is settled by difference, which is only right if the reservation was made.
            if check.kind == "R" or (check.kind == "B" and reservation.uncertain):
                continue
            if check.kind == "T":
                value = tokens
            elif check.kind == "A":
                value = _millis(audio_seconds)
            elif check.kind == "B":
                real = cost_micros if check.spend else tokens
                value = real - check.amount
            else:
                value = 0
            keys.extend(check.keys)
            args.extend((check.kind, value))
            count += 1
        if not count:
            return
        args[1] = count
        try:
            await self._settle(keys=keys, args=args)
        except _REDIS_ERRORS as exc:
            self.stats.settle_errors += 1
            self._note_redis_error(exc)

    def _checks(self, scopes: Sequence[Scope], demand: Demand) -> tuple[_Check, ...]:
        checks: list[_Check] = []
        for scope in scopes:
            limits = scope.limits
            base = self._base(scope)
            if limits.rpm is not None:
                checks.append(_Check("R", scope, limits.rpm, 1, (f"{base}:req",)))
            if limits.tpm is not None:
                checks.append(_Check("T", scope, limits.tpm, demand.tokens, (f"{base}:tok", f"{base}:tokn")))
            if limits.max_concurrent is not None:
                checks.append(_Check("C", scope, limits.max_concurrent, 1, (f"{base}:conc",)))
            if limits.budget_tokens is not None or limits.budget_usd is not None:
                start, end = period_bounds(limits.budget_period, datetime.now(UTC))
                ttl_ms = int((end - datetime.now(UTC)).total_seconds() * 1000) + 86_400_000
                period = f"{limits.budget_period}:{start:%Y%m%d}"
                if limits.budget_tokens is not None:
                    key = f"{self._prefix}:budget:{scope.kind}:{scope.id}:tokens:{period}"
                    checks.append(
                        _Check("B", scope, limits.budget_tokens, demand.tokens, (key,), ttl_ms, start)
                    )
                if limits.budget_usd is not None:
                    key = f"{self._prefix}:budget:{scope.kind}:{scope.id}:usd:{period}"
                    checks.append(
                        _Check(
                            "B",
                            scope,
                            round(limits.budget_usd * 1_000_000),
                            demand.cost_micros,
                            (key,),
                            ttl_ms,
                            start,
                            spend=True,
                        )
                    )
        return tuple(checks)

    def _base(self, scope: Scope) -> str:
        return f"{self._prefix}:rl:{scope.kind}:{scope.id}"

    def _audio_keys(self, scope: Scope) -> tuple[str, str]:
        base = self._base(scope)
        return (f"{base}:audio", f"{base}:audion")

    async def _run_reserve(self, member: str, checks: Sequence[_Check]) -> list[int]:
        keys: list[str] = []
        args: list[str | int] = [member, self._window_ms, self._lease_ms, len(checks)]
        for check in checks:
            keys.extend(check.keys)
            args.extend((check.kind, check.limit, check.amount, check.ttl_ms))
        return list(await self._reserve(keys=keys, args=args))

    async def _seed_budget(self, check: _Check) -> None:
        """A budget counter Redis does not have (first use this period, or Redis restarted) starts
        from the ledger's total for the period."""
        assert check.period_start is not None
        tokens, cost = await self._seed(
            check.scope.kind, check.scope.id, check.period_start.replace(tzinfo=None)
        )
        value = cost if check.spend else tokens
        await self._redis.set(check.keys[0], value, nx=True, px=check.ttl_ms)

    def _redis_down(
        self, member: str, demand: Demand, exc: Exception | None, maybe_held: tuple[_Check, ...] = ()
    ) -> Reservation:
        if exc is not None:
            self._note_redis_error(exc)
        # An answer that came too late may have reserved all the same: such a request settles too.
        reservation = Reservation(member, maybe_held, demand, enforced=False, uncertain=bool(maybe_held))
        if self.failure_mode == "closed":
            self.stats.failed_closed += 1
            if maybe_held:
                self._background(self.settle(reservation, tokens=0))
            raise LimiterUnavailable(
                "Rate limits cannot be checked right now; try again shortly.", headers={"retry-after": "1"}
            )
        self.stats.failed_open += 1
        return reservation

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note_redis_error(self, exc: Exception) -> None:
        """A refused or broken connection stops Redis calls for `retry_redis_after_s`; so do three
        slow answers in a row. One slow answer only fails its own request to the policy."""
        self.stats.redis_errors += 1
        if _slow(exc):
            self._slow_answers += 1
            if self._slow_answers >= 3:
                self._down_until = time.monotonic() + self._retry_after_s
        else:
            self._down_until = time.monotonic() + self._retry_after_s
        now = time.monotonic()
        if now - self._last_warning >= 5.0:
            self._last_warning = now
            _log.error(
                "Redis failed (%s: %s): limits are %s until it answers; %d requests served "
                "unlimited and %d refused so far",
                type(exc).__name__,
                exc,
                "NOT ENFORCED (fail-open)"
                if self.failure_mode == "open"
                else "refusing requests (fail-closed)",
                self.stats.failed_open,
                self.stats.failed_closed,
            )


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or month that `now` falls in."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


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


_DIMENSION = {"R": "requests", "T": "tokens", "A": "audio-seconds"}
_PERIODLY = {"day": "daily", "month": "monthly"}


def _headers(checks: Sequence[_Check], values: Sequence[int]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, from the tightest of the key's and the tenant's limits."""
    tightest: dict[str, tuple[int, int, int]] = {}
    for i, check in enumerate(checks):
        dimension = _DIMENSION.get(check.kind)
        if dimension is None:
            continue
        remaining, reset = int(values[2 * i]), int(values[2 * i + 1])
        if check.kind == "A":  # kept in milliseconds, shown in whole seconds
            remaining //= 1000
        if dimension not in tightest or remaining < tightest[dimension][1]:
            tightest[dimension] = (check.limit, remaining, reset)
    headers: dict[str, str] = {}
    for dimension, (limit, remaining, reset) in tightest.items():
        headers[f"x-ratelimit-limit-{dimension}"] = str(
            limit // 1000 if dimension == "audio-seconds" else limit
        )
        headers[f"x-ratelimit-remaining-{dimension}"] = str(max(0, remaining))
        headers[f"x-ratelimit-reset-{dimension}"] = format_duration(reset)
    return headers


def _retry_headers(retry_ms: int) -> dict[str, str]:
    retry_ms = max(1, int(retry_ms))
    return {"retry-after": str(max(1, math.ceil(retry_ms / 1000))), "retry-after-ms": str(retry_ms)}


_LIMIT_NAMES = {"R": "rpm", "T": "tpm", "A": "audio_spm", "C": "concurrency", "B": "budget"}


def _rejection(status: int, check: _Check, retry_ms: int, demand: Demand) -> RateLimited | QuotaExceeded:
    error = _rejection_error(status, check, retry_ms, demand)
    error.limit, error.scope = _LIMIT_NAMES[check.kind], check.scope.kind
    return error


def _rejection_error(
    status: int, check: _Check, retry_ms: int, demand: Demand
) -> RateLimited | QuotaExceeded:
    who = f"{check.scope.kind} {check.scope.id}"
    if check.kind == "B":
        what = "spend (USD)" if check.spend else "tokens"
        limit = check.limit / 1_000_000 if check.spend else check.limit
        period = _PERIODLY[check.scope.limits.budget_period]
        message = (
            f"You exceeded your current quota: the {period} {what} budget of {limit:g} for {who} is used up."
        )
        if status == -2:
            message = f"This request alone ({check.amount} estimated) exceeds the {what} budget for {who}."
        # Waiting will not help before the period ends; the SDKs honour x-should-retry.
        return QuotaExceeded(message, headers={"x-should-retry": "false"})
    if check.kind == "A":
        return _audio_rejection(status, check, retry_ms, who)
    dimension = {"R": "requests", "T": "tokens", "C": "requests"}[check.kind]
    if status == -2:
        message = (
            f"Request too large for {who} on tokens per window: Limit {check.limit}, Requested "
            f"{demand.tokens}. Lower max_tokens or the prompt."
        )
        error = RateLimited(message, headers={"x-should-retry": "false"})
        error.type = "tokens"
        return error
    seconds = max(0.001, retry_ms / 1000)
    if check.kind == "C":
        message = (
            f"Too many concurrent requests for {who}: Limit {check.limit}. Please try again in {seconds:g}s."
        )
    else:
        unit = "requests" if check.kind == "R" else "tokens"
        message = (
            f"Rate limit reached for {who} on {unit} per window: Limit {check.limit}, Requested "
            f"{check.amount}. Please try again in {format_duration(retry_ms)}."
        )
    headers = _retry_headers(retry_ms)
    if check.kind in _DIMENSION:
        headers[f"x-ratelimit-limit-{dimension}"] = str(check.limit)
        headers[f"x-ratelimit-remaining-{dimension}"] = "0"
        headers[f"x-ratelimit-reset-{dimension}"] = format_duration(retry_ms)
    error = RateLimited(message, headers=headers)
    error.type = dimension
    return error


def _audio_rejection(status: int, check: _Check, retry_ms: int, who: str) -> RateLimited:
    limit, asked = check.limit // 1000, f"{check.amount / 1000:g}"
    if status == -2:
        message = (
            f"Request too large for {who} on audio seconds per window: Limit {limit}, Requested "
            f"{asked}. Send shorter audio."
        )
        headers = {"x-should-retry": "false"}
    else:
        message = (
            f"Rate limit reached for {who} on audio seconds per window: Limit {limit}, Requested "
            f"{asked}. Please try again in {format_duration(retry_ms)}."
        )
        headers = _retry_headers(retry_ms)
        headers["x-ratelimit-reset-audio-seconds"] = format_duration(retry_ms)
    headers["x-ratelimit-limit-audio-seconds"] = str(limit)
    headers["x-ratelimit-remaining-audio-seconds"] = "0"
    error = RateLimited(message, headers=headers)
    error.type = "audio_seconds"
    return error


def _millis(seconds: float) -> int:
    return math.ceil(max(0.0, seconds) * 1000)
