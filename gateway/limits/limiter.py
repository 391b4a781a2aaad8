"""The rate limiter: every limit of a request checked and reserved in one Redis round trip.

Limits hold across all replicas that share one Redis. A request reserves up front: one request
against RPM, its estimated prompt plus completion budget against TPM and the token budget, its
estimated cost against the spend budget, and a concurrency slot. When it ends, `settle` replaces
the estimate with the real usage (counted in the window in which it settles, however long the
request ran) and frees the slot; a failed request settles with what it used. A settlement Redis
refuses is tried again until it lands; the slot is a short lease renewed while the request runs
(`leases.Heartbeat`), so a replica that dies gives its slots back within `lease_s`.

Tokens a request is found to need once it is admitted (text derived from its media) are reserved on
top (`reserve_tokens`): its token windows and budgets only, settled with it.

A realtime session holds, while it is open, one of its key's session leases and one concurrency
slot of its key and tenant (`hold_session`): the same leases, renewed by the same heartbeat, so the
caps hold across replicas and a dead replica's sessions free their slots within `lease_s`. The
session's own model calls run under that slot (`reserve(..., slot=False)`): no second slot.

Audio seconds per window are reserved apart (`reserve_audio`), once a request's audio is decoded and
its length known, before it is transcribed: a request holds then two reservations, settled together.

What is checked and where it is counted is `checks.py`; the Lua and its wire format `scripts.py`;
what a client is told, `headers.py` and `rejections.py`. This module decides: admit, refuse, seed a
budget from the ledger, or follow the failure policy when Redis does not answer, or when the
ledger cannot seed a budget (`closed`: 503; `open`: that budget is not checked for the request,
every other limit still is).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from gateway.errors import LimiterUnavailable
from gateway.limits.checks import (
    LEASES,
    Check,
    Demand,
    KeySchema,
    Scope,
    ScopeCheck,
    ScopeKind,
    plan,
    plan_audio,
    plan_session,
)
from gateway.limits.headers import admitted_headers
from gateway.limits.leases import Heartbeat
from gateway.limits.rejections import rejection
from gateway.limits.scripts import Reply, Scripts, Verdict

__all__ = ["Demand", "LimiterStats", "RateLimiter", "Reservation", "Scope", "ScopeKind", "SeedFn"]

_log = logging.getLogger("tantra.limits")

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)
# Slow answers in a row after which Redis is left alone for `retry_redis_after_s`.
_SLOW_ANSWERS_TO_PAUSE = 3
# A settlement Redis refuses is tried again after these waits, doubling up to the last.
_SETTLE_FIRST_WAIT_S = 0.05
_SETTLE_LONGEST_WAIT_S = 5.0
# The checks of tokens found after admission (reserve_tokens): no second request, no second slot.
_TOKEN_CHECKS = frozenset({Check.TPM, Check.BUDGET})


def _slow(exc: BaseException) -> bool:
    """Redis (or a free pooled connection) did not come in time, as opposed to refusing."""
    return isinstance(exc, RedisTimeout | TimeoutError) or "No connection available" in str(exc)


# (scope kind, scope id, period start) -> (tokens, micro-USD) the ledger holds for that period.
SeedFn = Callable[[ScopeKind, str, datetime], Awaitable[tuple[int, int]]]


@dataclass
class Reservation:
    """What one request holds in Redis until it is settled."""

    member: str
    checks: tuple[ScopeCheck, ...] = ()
    # The key that marks its settlement done, in the checks' hash slot (see KeySchema.settled).
    marker: str = ""
    demand: Demand = field(default_factory=lambda: Demand(0))
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
    settle_retries: int = 0
    settles_abandoned: int = 0
    seed_errors: int = 0


class RateLimiter:
    """Reserves and settles requests against the limits of their scopes, in Redis."""

    # How long Redis calls stop after Redis refused, or answered too slowly three times running.
    retry_redis_after_s: float = 1.0
    # How long a settlement Redis refuses is tried again (a lease frees itself after `lease_s`
    # anyway; windows and budgets wait for it). Shutdown stops the retries. A settlement that moves
    # a budget leaves a marker this long (plus a minute), so that a retry cannot move it twice.
    settle_retry_s: float = 900.0

    def __init__(
        self,
        redis: Redis,
        *,
        window_s: int,
        lease_s: float,
        failure_mode: Literal["open", "closed"],
        seed: SeedFn,
        prefix: str = "tantra",
    ) -> None:
        self._redis = redis
        self._scripts = Scripts(redis, window_ms=window_s * 1000, lease_ms=int(lease_s * 1000))
        self._keys = KeySchema(prefix)
        self.failure_mode = failure_mode
        self._seed = seed
        self._down_until = 0.0
        self._slow_answers = 0
        self._last_warning = 0.0
        self._last_seed_warning = float("-inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat = Heartbeat(self._scripts, lease_s)
        self._closing = False
        self.stats = LimiterStats()

    @property
    def redis_ok(self) -> bool:
        return time.monotonic() >= self._down_until

    async def reserve(self, scopes: Sequence[Scope], demand: Demand, *, slot: bool = True) -> Reservation:
        """Admit the request or raise RateLimited / QuotaExceeded (or LimiterUnavailable, when
        Redis is down and the policy is `closed`). `slot=False` (a realtime session's own call, run
        under the session's slot) leaves the concurrency check out; every other limit applies."""
        checks = plan(scopes, demand, self._keys, datetime.now(UTC))
        if not slot:
            checks = tuple(check for check in checks if check.kind is not Check.CONCURRENCY)
        return await self._reserve_checks(scopes, checks, demand)

    async def hold_session(self, scopes: Sequence[Scope], per_key: int) -> Reservation:
        """A realtime session's leases: one of the key's `per_key` sessions and a concurrency slot
        of each scope with `max_concurrent`, or RateLimited. Held (renewed) until `settle`."""
        return await self._reserve_checks(scopes, plan_session(scopes, per_key, self._keys), Demand(0))

    async def reserve_tokens(self, scopes: Sequence[Scope], tokens: int, cost_micros: int) -> Reservation:
        """Reserve `tokens` more against the token windows and budgets only (no request, no slot):
        what a request is found to need once admitted, such as the text derived from its media."""
        checks = plan(scopes, Demand(tokens, cost_micros), self._keys, datetime.now(UTC))
        demand = Demand(tokens, cost_micros)
        return await self._reserve_checks(scopes, tuple(c for c in checks if c.kind in _TOKEN_CHECKS), demand)

    async def reserve_audio(self, scopes: Sequence[Scope], seconds: float) -> Reservation:
        """Reserve `seconds` of audio against each scope's `audio_spm`, or raise RateLimited: a
        reservation of its own, made once a request's audio is decoded (its length known) and
        before it is transcribed."""
        demand = Demand(0, audio_seconds=seconds)
        return await self._reserve_checks(scopes, plan_audio(scopes, demand, self._keys), demand)

    async def _reserve_checks(
        self, scopes: Sequence[Scope], checks: tuple[ScopeCheck, ...], demand: Demand
    ) -> Reservation:
        member = uuid.uuid4().hex
        if not checks:
            return Reservation(member, demand=demand, enforced=False)
        marker = self._keys.settled(self._keys.tag(scopes), member)
        if not self.redis_ok:
            return self._redis_down(member, demand, None)
        try:
            reply, checks = await self._reserve_seeded(member, checks)
        except _REDIS_ERRORS as exc:
            return self._redis_down(member, demand, exc, checks if _slow(exc) else (), marker)
        self._slow_answers = 0
        if reply.verdict is Verdict.ADMITTED:
            self.stats.admitted += 1
            headers = admitted_headers(checks, reply.values)
            reservation = Reservation(
                member, checks, marker, demand, admitted_at=reply.now_ms / 1000, headers=headers
            )
            self._heartbeat.hold(member, _leases(checks))
            return reservation
        self.stats.rejected += 1
        raise rejection(reply.verdict, reply.culprit(checks), reply.retry_ms, demand)

    async def _reserve_seeded(
        self, member: str, checks: tuple[ScopeCheck, ...]
    ) -> tuple[Reply, tuple[ScopeCheck, ...]]:
        """Reserve, seeding a missing budget counter from the ledger and asking again: each try
        seeds one counter, so every budget of the request (a key's and its tenant's, tokens and
        spend, all new in a period) gets its try before the answer is taken. A budget the ledger
        cannot seed follows the failure policy: refused when `closed`, left out when `open`."""
        for _ in range(1 + sum(check.kind is Check.BUDGET for check in checks)):
            reply = await self._scripts.reserve(member, checks)
            if reply.verdict is not Verdict.UNSEEDED:
                break
            culprit = reply.culprit(checks)
            if not await self._seed_budget(culprit):
                checks = tuple(check for check in checks if check is not culprit)
        return reply, checks

    def _ledger_down(self, check: ScopeCheck) -> None:
        """The ledger could not seed `check`'s counter. Nothing is written: the next request tries
        again. `closed` refuses the request (503); `open` serves it without that budget alone."""
        self.stats.seed_errors += 1
        now = time.monotonic()
        if now - self._last_seed_warning >= 5.0:  # at most every 5 s, as Redis failures
            self._last_seed_warning = now
            _log.exception(
                "the %s budget of %s %s could not be read from the ledger: %s",
                "spend" if check.spend else "token",
                check.scope.kind,
                check.scope.id,
                "refusing the request (fail-closed)"
                if self.failure_mode == "closed"
                else "NOT ENFORCED (fail-open)",
            )
        if self.failure_mode == "closed":
            self.stats.failed_closed += 1
            raise LimiterUnavailable(
                "Budgets cannot be checked right now; try again shortly.", headers={"retry-after": "1"}
            )
        self.stats.failed_open += 1

    async def settle(
        self, reservation: Reservation, *, tokens: int, cost_micros: int = 0, audio_seconds: float = 0.0
    ) -> None:
        """Replace the estimate with what the request really used and free its slot, trying again
        while Redis refuses (each settlement lands once: its marker key). Never raises."""
        already, reservation.settled = reservation.settled, True
        self._heartbeat.release(reservation.member)
        if already or not (reservation.enforced or reservation.uncertain):
            return
        used = Demand(tokens, cost_micros, audio_seconds)
        values = [
            (check, check.settle_value(used))
            for check in reservation.checks
            # An RPM slot stays used; a budget is settled by difference, which is only right if
            # the reservation was made.
            if not (check.kind is Check.RPM or (check.kind is Check.BUDGET and reservation.uncertain))
        ]
        if values:
            await self._settle_until_landed(reservation, values)

    def release(self, reservation: Reservation) -> asyncio.Task[None]:
        """Settle `reservation` with nothing used, in a task of its own: a caller that is cancelled
        (a connection torn down) still gives back what it held. Await the task to see it done."""
        return self._background(self.settle(reservation, tokens=0))

    async def _settle_until_landed(
        self, reservation: Reservation, values: list[tuple[ScopeCheck, int]]
    ) -> None:
        deadline = time.monotonic() + self.settle_retry_s
        wait = _SETTLE_FIRST_WAIT_S
        while True:
            try:
                await self._scripts.settle(
                    reservation.member, values, reservation.marker, int(self.settle_retry_s * 1000) + 60_000
                )
                return
            except _REDIS_ERRORS as exc:
                self.stats.settle_errors += 1
                self._note_redis_error(exc)
            if self._closing or time.monotonic() + wait > deadline:
                self.stats.settles_abandoned += 1
                _log.error("a settlement could not reach Redis; its leases expire by themselves")
                return
            self.stats.settle_retries += 1
            await asyncio.sleep(wait)
            wait = min(wait * 2, _SETTLE_LONGEST_WAIT_S)

    async def close(self) -> None:
        """At shutdown: settlements still failing stop retrying, and leases are no longer renewed."""
        self._closing = True
        await self._heartbeat.stop()

    async def _seed_budget(self, check: ScopeCheck) -> bool:
        """A budget counter Redis does not have (first use this period, or Redis restarted) starts
        from the ledger's total for the period. False when the ledger could not say (and the policy
        is `open`): the request goes on without that budget."""
        assert check.budget is not None
        try:
            tokens, cost = await self._seed(
                check.scope.kind, check.scope.id, check.budget.period_start.replace(tzinfo=None)
            )
        except Exception:  # whatever the database raised: the ledger, not Redis, is down
            self._ledger_down(check)
            return False
        value = cost if check.spend else tokens
        await self._redis.set(check.keys[0], value, nx=True, px=check.ttl_ms)
        return True

    def _redis_down(
        self,
        member: str,
        demand: Demand,
        exc: Exception | None,
        maybe_held: tuple[ScopeCheck, ...] = (),
        marker: str = "",
    ) -> Reservation:
        """The failure policy: `open` serves the request unlimited, `closed` refuses it with a 503."""
        if exc is not None:
            self._note_redis_error(exc)
        # An answer that came too late may have reserved all the same: such a request settles too.
        reservation = Reservation(
            member, maybe_held, marker, demand, enforced=False, uncertain=bool(maybe_held)
        )
        if self.failure_mode == "closed":
            self.stats.failed_closed += 1
            if maybe_held:
                self._background(self.settle(reservation, tokens=0))
            raise LimiterUnavailable(
                "Rate limits cannot be checked right now; try again shortly.", headers={"retry-after": "1"}
            )
        self.stats.failed_open += 1
        return reservation

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` off the request's path, holding a reference so it is not collected midway."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _note_redis_error(self, exc: Exception) -> None:
        """A refused or broken connection stops Redis calls for `retry_redis_after_s`; so do three
        slow answers in a row. One slow answer only fails its own request to the policy."""
        self.stats.redis_errors += 1
        slow = _slow(exc)
        if slow:
            self._slow_answers += 1
        if not slow or self._slow_answers >= _SLOW_ANSWERS_TO_PAUSE:
            self._down_until = time.monotonic() + self.retry_redis_after_s
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


def _leases(checks: Sequence[ScopeCheck]) -> tuple[str, ...]:
    """The lease keys among a request's checks (concurrency, sessions): what the heartbeat renews."""
    return tuple(check.keys[0] for check in checks if check.kind in LEASES)
