"""What a request is checked against, and where each check's counters live in Redis.

A request names its scopes (its key, its tenant); each limit a scope sets becomes one `ScopeCheck`:
which kind of limit, how much the request asks of it, and the Redis keys that count it. The limiter
sends the checks to the Lua scripts (`scripts.py`) in the order `plan` gives them, which is also the
order a refusal and the x-ratelimit-* headers are chosen in.

Redis key schema (`prefix` is `tantra` unless configured; `{tag}` is literally in braces):

    {prefix}:rl:{tag}:{scope}:{id}:req                    RPM: log of admitted requests
    {prefix}:rl:{tag}:{scope}:{id}:tok, ...:tokn          TPM: log of requests, and tokens per request
    {prefix}:rl:{tag}:{scope}:{id}:audio, ...:audion      audio seconds: the same, in milliseconds
    {prefix}:rl:{tag}:{scope}:{id}:conc                   concurrency: leases of requests in flight
    {prefix}:rl:{tag}:key:{id}:sessions                   realtime sessions: leases of open sessions
    {prefix}:budget:{tag}:{scope}:{id}:tokens:{period}:{YYYYMMDD}   token budget of the period
    {prefix}:budget:{tag}:{scope}:{id}:usd:{period}:{YYYYMMDD}      spend budget (micro-USD)
    {prefix}:settled:{tag}:{member}                       a budget's settlement, done (16 minutes)

The tag is Redis Cluster's hash tag: `{tenant:<id>}` for a key with a tenant (its key's and its
tenant's counters alike), `{key:<id>}` without one. Every key one script touches then lies in one
hash slot, as Redis Cluster requires of a script; a tenant's counters live on one shard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from gateway.store.records import Limits

ScopeKind = Literal["key", "tenant"]

# A budget counter outlives its period by a day, so a request settling just after midnight finds it.
_BUDGET_GRACE_MS = 86_400_000


class Check(StrEnum):
    """A kind of limit. The value is the limit's name in errors and metrics (`RateLimited.limit`);
    the Lua scripts know each kind by a letter, given in `scripts.WIRE`."""

    RPM = "rpm"
    TPM = "tpm"
    AUDIO = "audio_spm"
    CONCURRENCY = "concurrency"
    BUDGET = "budget"
    # A key's open realtime sessions: leases as concurrency's, in a set of their own.
    SESSIONS = "realtime_sessions"


# The kinds kept as leases (a slot held while the request or session lasts, renewed by the heartbeat).
LEASES = frozenset({Check.CONCURRENCY, Check.SESSIONS})


# Key suffixes of the windowed checks, under `{prefix}:rl:{scope}:{id}`: the log, then (for amounts
# other than one per request) the hash of amounts per request.
_WINDOW_KEYS: dict[Check, tuple[str, ...]] = {
    Check.RPM: ("req",),
    Check.TPM: ("tok", "tokn"),
    Check.AUDIO: ("audio", "audion"),
    Check.CONCURRENCY: ("conc",),
    Check.SESSIONS: ("sessions",),
}


@dataclass(frozen=True)
class Scope:
    """A level whose limits apply to a request: the key itself, and its tenant."""

    kind: ScopeKind
    id: str
    limits: Limits


@dataclass(frozen=True)
class Demand:
    """What a request is expected to use, at most: reserved before it runs. At settlement the same
    shape carries what it really used."""

    tokens: int
    cost_micros: int = 0
    audio_seconds: float = 0.0


@dataclass(frozen=True)
class BudgetTerms:
    """What a budget check needs beyond a window: its period (to seed the counter from the ledger,
    and to expire it), and whether it counts spend (micro-USD) rather than tokens."""

    period_start: datetime
    ttl_ms: int
    spend: bool = False


@dataclass(frozen=True)
class ScopeCheck:
    """One limit of one scope, as a request is checked against it."""

    kind: Check
    scope: Scope
    limit: int
    amount: int
    keys: tuple[str, ...]
    budget: BudgetTerms | None = None

    @property
    def spend(self) -> bool:
        return self.budget is not None and self.budget.spend

    @property
    def ttl_ms(self) -> int:
        return self.budget.ttl_ms if self.budget is not None else 0

    def settle_value(self, used: Demand) -> int:
        """What the settle script is told: a window's real amount (it replaces the reserved one), a
        budget's difference from the reservation (the counter moves by it), nothing for a slot."""
        if self.kind in LEASES:
            return 0
        if self.kind is Check.BUDGET:
            return measure(self.kind, used, spend=self.spend) - self.amount
        return measure(self.kind, used)


def measure(kind: Check, demand: Demand, *, spend: bool = False) -> int:
    """How much of a kind of limit a demand takes, in the unit its counter keeps."""
    if kind is Check.TPM:
        return demand.tokens
    if kind is Check.AUDIO:
        return millis(demand.audio_seconds)
    if kind is Check.BUDGET:
        return demand.cost_micros if spend else demand.tokens
    return 1


def millis(seconds: float) -> int:
    """Audio is counted in whole milliseconds, rounded up, so a limit is never overrun by rounding."""
    return math.ceil(max(0.0, seconds) * 1000)


@dataclass(frozen=True)
class KeySchema:
    """The Redis key names, in one place (see the module's docstring for the whole layout)."""

    prefix: str

    @staticmethod
    def tag(scopes: Sequence[Scope]) -> str:
        """The hash tag of a request's keys: its tenant's, else its key's."""
        chosen = next((s for s in scopes if s.kind == "tenant"), scopes[0] if scopes else None)
        return "{-}" if chosen is None else f"{{{chosen.kind}:{chosen.id}}}"

    def window(self, scope: Scope, kind: Check, tag: str) -> tuple[str, ...]:
        base = f"{self.prefix}:rl:{tag}:{scope.kind}:{scope.id}"
        return tuple(f"{base}:{suffix}" for suffix in _WINDOW_KEYS[kind])

    def budget(self, scope: Scope, *, spend: bool, start: datetime, tag: str) -> str:
        period = f"{scope.limits.budget_period}:{start:%Y%m%d}"
        unit = "usd" if spend else "tokens"
        return f"{self.prefix}:budget:{tag}:{scope.kind}:{scope.id}:{unit}:{period}"

    def settled(self, tag: str, member: str) -> str:
        return f"{self.prefix}:settled:{tag}:{member}"


def plan(scopes: Sequence[Scope], demand: Demand, keys: KeySchema, now: datetime) -> tuple[ScopeCheck, ...]:
    """A request's checks, scope by scope: RPM, TPM, concurrency, then the token and spend budgets.
    Audio seconds are not among them: they are reserved apart (`plan_audio`)."""
    checks: list[ScopeCheck] = []
    tag = keys.tag(scopes)
    for scope in scopes:
        limits = scope.limits
        for kind, limit in (
            (Check.RPM, limits.rpm),
            (Check.TPM, limits.tpm),
            (Check.CONCURRENCY, limits.max_concurrent),
        ):
            if limit is not None:
                keys_of = keys.window(scope, kind, tag)
                checks.append(ScopeCheck(kind, scope, limit, measure(kind, demand), keys_of))
        checks.extend(_budgets(scope, demand, keys, now, tag))
    return tuple(checks)


def plan_session(scopes: Sequence[Scope], per_key: int, keys: KeySchema) -> tuple[ScopeCheck, ...]:
    """What an open realtime session holds: one of its key's `per_key` session leases (first, so that
    a full cap is the refusal named), and one concurrency slot of each scope that sets
    `max_concurrent`, as a request in flight does."""
    tag = keys.tag(scopes)
    checks = [
        ScopeCheck(Check.SESSIONS, scope, per_key, 1, keys.window(scope, Check.SESSIONS, tag))
        for scope in scopes
        if scope.kind == "key"
    ]
    for scope in scopes:
        limit = scope.limits.max_concurrent
        if limit is not None:
            checks.append(
                ScopeCheck(Check.CONCURRENCY, scope, limit, 1, keys.window(scope, Check.CONCURRENCY, tag))
            )
    return tuple(checks)


def plan_audio(scopes: Sequence[Scope], demand: Demand, keys: KeySchema) -> tuple[ScopeCheck, ...]:
    """The audio-seconds checks of the scopes that set `audio_spm`, counted in milliseconds."""
    return tuple(
        ScopeCheck(
            Check.AUDIO,
            scope,
            scope.limits.audio_spm * 1000,
            measure(Check.AUDIO, demand),
            keys.window(scope, Check.AUDIO, keys.tag(scopes)),
        )
        for scope in scopes
        if scope.limits.audio_spm is not None
    )


def _budgets(scope: Scope, demand: Demand, keys: KeySchema, now: datetime, tag: str) -> list[ScopeCheck]:
    limits = scope.limits
    wanted = [(False, limits.budget_tokens), (True, _micros(limits.budget_usd))]
    if all(limit is None for _, limit in wanted):
        return []
    start, end = period_bounds(limits.budget_period, now)
    ttl_ms = int((end - now).total_seconds() * 1000) + _BUDGET_GRACE_MS
    return [
        ScopeCheck(
            Check.BUDGET,
            scope,
            limit,
            measure(Check.BUDGET, demand, spend=spend),
            (keys.budget(scope, spend=spend, start=start, tag=tag),),
            BudgetTerms(start, ttl_ms, spend),
        )
        for spend, limit in wanted
        if limit is not None
    ]


def _micros(usd: float | None) -> int | None:
    return None if usd is None else round(usd * 1_000_000)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or month that `now` falls in."""
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end
