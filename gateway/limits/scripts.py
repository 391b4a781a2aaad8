"""The limiter's Lua scripts. Each runs atomically in Redis: one round trip checks and reserves every
limit of a request, another settles it. Time is Redis's own clock, so replicas never disagree.

Sliding windows are logs: a sorted set of request members scored by admission time (ms), and for
tokens a hash from member to tokens plus a running total under the field `#`. A request is admitted
when the window (now - window, now] plus the request stays within the limit, so no window of that
length ever holds more than the limit.

Every script takes only keys of one Redis Cluster hash slot: `checks.KeySchema` tags a request's
keys with its tenant (or its key, when it has none), so the scripts run on Redis Cluster too.

`Scripts` is the one caller of the Lua: it packs the checks into KEYS and ARGV, each kind of check
as its letter (`WIRE`), and reads RESERVE's answer back as a `Reply`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final

from redis.asyncio import Redis

from gateway.limits.checks import Check, ScopeCheck

# How the Lua knows each kind of check: the only place the letters are spelt in Python.
WIRE: Final[Mapping[Check, str]] = MappingProxyType(
    {
        Check.RPM: "R",
        Check.TPM: "T",
        Check.AUDIO: "A",
        Check.CONCURRENCY: "C",
        Check.BUDGET: "B",
        # A realtime session's lease: kept exactly as a concurrency slot, in a set of its own.
        Check.SESSIONS: "S",
    }
)

# KEYS, in check order: R -> log; T (and A) -> log, tokens; C (and S) -> leases; B -> counter.
# A (audio milliseconds per window) is kept exactly as T (tokens per window) is; S (a key's realtime
# sessions) exactly as C (requests in flight).
# ARGV: member, window_ms, lease_ms, n, then per check: kind, limit, amount, ttl_ms.
# Returns {1, 0, 0, now, remaining_1, reset_1, ...} when admitted, else
# {0, i, retry_ms, now} over a limit, {-1, i, 0, now} budget counter missing (seed it and retry),
# {-2, i, 0, now} the request alone is larger than limit i, {-3, i, retry_ms, now} budget spent.
RESERVE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local window = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local cutoff = now - window

local function trim_tokens(log, tokens)
  while true do
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local values = redis.call('HMGET', tokens, unpack(old))
    local freed = 0
    for i = 1, #values do freed = freed + (tonumber(values[i]) or 0) end
    redis.call('HDEL', tokens, unpack(old))
    redis.call('ZREM', log, unpack(old))
    redis.call('HINCRBY', tokens, '#', -freed)
  end
  return tonumber(redis.call('HGET', tokens, '#') or '0')
end

local used = {}
local k = 1
for i = 1, n do
  local base = 4 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  if kind == 'R' then
    local log = KEYS[k]; k = k + 1
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
    local count = redis.call('ZCARD', log)
    if limit < 1 then return {-2, i, 0, now} end
    if count + 1 > limit then
      local oldest = redis.call('ZRANGE', log, count - limit, count - limit, 'WITHSCORES')
      return {0, i, tonumber(oldest[2]) + window - now, now}
    end
    used[i] = count
  elseif kind == 'T' or kind == 'A' then
    local log, tokens = KEYS[k], KEYS[k + 1]; k = k + 2
    local total = trim_tokens(log, tokens)
    if amount > limit then return {-2, i, 0, now} end
    if total + amount > limit then
      local need = total + amount - limit
      local retry = window
      local entries = redis.call('ZRANGE', log, 0, 999, 'WITHSCORES')
      local freed = 0
      for j = 1, #entries, 2 do
        freed = freed + (tonumber(redis.call('HGET', tokens, entries[j])) or 0)
        if freed >= need then retry = tonumber(entries[j + 1]) + window - now; break end
      end
      return {0, i, retry, now}
    end
    used[i] = total
  elseif kind == 'C' or kind == 'S' then
    local leases = KEYS[k]; k = k + 1
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
    local count = redis.call('ZCARD', leases)
    if limit < 1 then return {-2, i, 0, now} end
    if count + 1 > limit then return {0, i, 1000, now} end
    used[i] = count
  else -- 'B'
    local counter = KEYS[k]; k = k + 1
    local value = redis.call('GET', counter)
    if not value then return {-1, i, 0, now} end
    if tonumber(value) + amount > limit then return {-3, i, redis.call('PTTL', counter), now} end
    used[i] = tonumber(value)
  end
end

local out = {1, 0, 0, now}
k = 1
for i = 1, n do
  local base = 4 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  local remaining, reset = 0, 0
  if kind == 'R' then
    local log = KEYS[k]; k = k + 1
    redis.call('ZADD', log, now, member)
    redis.call('PEXPIRE', log, window + 1000)
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    remaining = limit - used[i] - 1
    reset = tonumber(oldest[2]) + window - now
  elseif kind == 'T' or kind == 'A' then
    local log, tokens = KEYS[k], KEYS[k + 1]; k = k + 2
    redis.call('ZADD', log, now, member)
    redis.call('HSET', tokens, member, amount)
    redis.call('HINCRBY', tokens, '#', amount)
    redis.call('PEXPIRE', log, window + 60000)
    redis.call('PEXPIRE', tokens, window + 60000)
    local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    remaining = limit - used[i] - amount
    reset = tonumber(oldest[2]) + window - now
  elseif kind == 'C' or kind == 'S' then
    local leases = KEYS[k]; k = k + 1
    redis.call('ZADD', leases, now + lease, member)
    redis.call('PEXPIRE', leases, lease)
    remaining = limit - used[i] - 1
  else
    local counter = KEYS[k]; k = k + 1
    redis.call('INCRBY', counter, amount)
    remaining = limit - used[i] - amount
    reset = redis.call('PTTL', counter)
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
end
return out
"""

# Settle a reservation once the real usage is known (or release it when the request failed).
# KEYS, in check order: T, A -> log, tokens; C, S -> leases; B -> counter (R checks pass no keys); then
# the request's settled marker. Windows and leases are set to a value, so settling twice is harmless;
# a budget moves by a difference, so a settlement that moves one writes the marker (for marker_ms)
# and one that finds it already there does nothing: a retry after an uncertain answer lands once.
# ARGV: member, window_ms, marker_ms, n, then per check: kind, value (T: real tokens; A: real audio
# ms; B: real minus reserved; else 0).
# The real usage counts in the window in which it is settled, whether or not the reservation is
# still in it: a stream that outlives the window is not forgotten, it is moved to now.
SETTLE = r"""
local member = ARGV[1]
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
for i = 1, n do
  if ARGV[4 + (i - 1) * 2 + 1] == 'B' and tonumber(ARGV[4 + (i - 1) * 2 + 2]) ~= 0 then
    if not redis.call('SET', KEYS[#KEYS], 1, 'NX', 'PX', tonumber(ARGV[3])) then return 0 end
    break
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = 1
for i = 1, n do
  local kind = ARGV[4 + (i - 1) * 2 + 1]
  local value = tonumber(ARGV[4 + (i - 1) * 2 + 2])
  if kind == 'T' or kind == 'A' then
    local log, tokens = KEYS[k], KEYS[k + 1]; k = k + 2
    local old = tonumber(redis.call('HGET', tokens, member) or '0')
    if value > 0 then
      redis.call('ZADD', log, now, member)
      redis.call('HSET', tokens, member, value)
    else
      redis.call('ZREM', log, member)
      redis.call('HDEL', tokens, member)
    end
    redis.call('HINCRBY', tokens, '#', value - old)
    redis.call('PEXPIRE', log, window + 60000)
    redis.call('PEXPIRE', tokens, window + 60000)
  elseif kind == 'C' or kind == 'S' then
    redis.call('ZREM', KEYS[k], member); k = k + 1
  elseif kind == 'B' then
    if redis.call('EXISTS', KEYS[k]) == 1 and value ~= 0 then redis.call('INCRBY', KEYS[k], value) end
    k = k + 1
  end
end
return 1
"""

# Renew the concurrency leases of a request still running (the heartbeat): each lease moves to
# now + lease_ms, only if it is still held (a settled request's lease is not brought back).
# KEYS: the request's leases (C checks). ARGV: member, lease_ms.
RENEW = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
for i = 1, #KEYS do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then
    redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[1])
    redis.call('PEXPIRE', KEYS[i], lease)
  end
end
return 1
"""


class Verdict(IntEnum):
    """RESERVE's first value: what became of the request."""

    ADMITTED = 1
    OVER_LIMIT = 0  # a window is full, or every concurrency slot taken: retry in `retry_ms`
    UNSEEDED = -1  # a budget counter Redis does not hold: seed it from the ledger and ask again
    TOO_LARGE = -2  # the request alone is larger than the limit: waiting will not help
    SPENT = -3  # a budget is used up until its period ends


@dataclass(frozen=True)
class Reply:
    """RESERVE's answer. `index` is the (1-based, as in Lua) check that refused or needs seeding;
    `values` holds each check's remaining amount and reset time (ms) when admitted."""

    verdict: Verdict
    index: int
    retry_ms: int
    now_ms: int
    values: tuple[int, ...] = ()

    def culprit(self, checks: Sequence[ScopeCheck]) -> ScopeCheck:
        return checks[self.index - 1]


class Scripts:
    """The scripts, registered on one Redis client and called in their wire format."""

    def __init__(self, redis: Redis, *, window_ms: int, lease_ms: int) -> None:
        self._reserve = redis.register_script(RESERVE)
        self._settle = redis.register_script(SETTLE)
        self._renew = redis.register_script(RENEW)
        self._window_ms = window_ms
        self._lease_ms = lease_ms

    async def reserve(self, member: str, checks: Sequence[ScopeCheck]) -> Reply:
        keys: list[str] = []
        args: list[str | int] = [member, self._window_ms, self._lease_ms, len(checks)]
        for check in checks:
            keys.extend(check.keys)
            args.extend((WIRE[check.kind], check.limit, check.amount, check.ttl_ms))
        status, index, retry_ms, now_ms, *values = (int(v) for v in await self._reserve(keys=keys, args=args))
        return Reply(Verdict(status), index, retry_ms, now_ms, tuple(values))

    async def settle(
        self, member: str, values: Sequence[tuple[ScopeCheck, int]], marker: str, marker_ms: int
    ) -> None:
        """Settle `member`'s checks, each with the value `ScopeCheck.settle_value` gave it, once:
        `marker` (a key in the checks' hash slot, kept `marker_ms`) says a budget was moved."""
        keys: list[str] = []
        args: list[str | int] = [member, self._window_ms, marker_ms, len(values)]
        for check, value in values:
            keys.extend(check.keys)
            args.extend((WIRE[check.kind], value))
        await self._settle(keys=[*keys, marker], args=args)

    async def renew(self, member: str, leases: Sequence[str]) -> None:
        """Move `member`'s concurrency leases to now plus the lease time."""
        await self._renew(keys=list(leases), args=[member, self._lease_ms])
