"""Refusals counted per subject (an API key, a client address) in Redis, so that a flood of
requests that are refused anyway is throttled before it costs parsing, validation or a database
lookup.

Counting happens only on the refusal path: one pipelined INCR/EXPIRE round trip per refused
request, in fixed windows shared by every replica. Once a subject's count reaches its allowance,
the replica that saw it remembers the block in memory until the window ends; checking a subject is
then a dict lookup, so admitted traffic pays no Redis round trip for it. Redis that does not answer
blocks nobody (these are abuse brakes, not the limits a tenant pays for): the failure is logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.settings.policy import Allowance

_log = logging.getLogger("tantra.limits")

# Blocked subjects remembered per replica, at most: past it the oldest block is forgotten (a
# forgotten subject is blocked again at its next refusal, one round trip later).
MAX_REMEMBERED = 10_000


class Strikes:
    """Per-subject refusal counts under the Redis key prefix `tantra:{kind}:`."""

    def __init__(self, redis: Redis, kind: str, *, max_remembered: int = MAX_REMEMBERED) -> None:
        self._redis = redis
        self.kind = kind
        self._blocked: OrderedDict[str, float] = OrderedDict()  # subject -> monotonic end of block
        self._max_remembered = max_remembered
        self.redis_errors = 0

    def blocked_for(self, subject: str) -> float:
        """Seconds until `subject` may be refused again without being throttled; 0: not blocked.
        Memory only: no round trip."""
        until = self._blocked.get(subject)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[subject]
            return 0.0
        return left

    async def strike(self, subject: str, allowance: Allowance) -> float:
        """Count one refusal of `subject`; the seconds it is now blocked for (0: not blocked)."""
        if allowance.count <= 0:
            return 0.0
        now = time.time()
        window = math.floor(now / allowance.window_s)
        key = f"tantra:{self.kind}:{subject}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, math.ceil(allowance.window_s) + 1)
                count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self.redis_errors += 1
            _log.warning("refusals of %s could not be counted: %s", self.kind, type(exc).__name__)
            return 0.0
        if int(count) < allowance.count:
            return 0.0
        left = (window + 1) * allowance.window_s - now
        self._remember(subject, time.monotonic() + left)
        return left

    def _remember(self, subject: str, until: float) -> None:
        self._blocked[subject] = until
        self._blocked.move_to_end(subject)
        while len(self._blocked) > self._max_remembered:
            self._blocked.popitem(last=False)
