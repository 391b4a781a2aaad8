"""Refusals counted per subject (an API key, a client address) in Redis, so that a flood of
requests that are refused anyway is throttled before it costs parsing, validation or a database
lookup.

Counting happens only on the refusal path: one pipelined INCR/EXPIRE/GET round trip per refused
request, shared by every replica. The count is a sliding-window estimate (this window's count plus
the last window's, weighted by how much of it still overlaps the sliding window), so a burst that
straddles a window boundary is counted whole instead of starting again from zero at the boundary
(a fixed window lets twice the allowance through there). Once a subject's estimate reaches its
allowance, the replica that saw it remembers the block in memory until the estimate falls below it
again; checking a subject is then a dict lookup, so admitted traffic pays no Redis round trip for
it. Redis that does not answer blocks nobody (these are abuse brakes, not the limits a tenant pays
for): the failure is logged.
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
        width = allowance.window_s
        window = math.floor(now / width)
        key = f"tantra:{self.kind}:{subject}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                # Read again through the next window, as its previous one.
                pipe.expire(key, math.ceil(2 * width) + 1)
                pipe.get(f"tantra:{self.kind}:{subject}:{window - 1}")
                count, _, previous = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self.redis_errors += 1
            _log.warning("refusals of %s could not be counted: %s", self.kind, type(exc).__name__)
            return 0.0
        left = blocked_seconds(
            int(count), int(previous or 0), (now - window * width) / width, allowance.count, width
        )
        if left > 0:
            self._remember(subject, time.monotonic() + left)
        return left

    def _remember(self, subject: str, until: float) -> None:
        self._blocked[subject] = until
        self._blocked.move_to_end(subject)
        while len(self._blocked) > self._max_remembered:
            self._blocked.popitem(last=False)


def blocked_seconds(current: int, previous: int, elapsed: float, allowance: int, width: float) -> float:
    """Seconds until the sliding estimate of `current` refusals in this window (`elapsed` of it gone,
    0 to 1) and `previous` in the last one falls below `allowance`, with no refusal more; 0: it is
    below already."""
    if previous * (1 - elapsed) + current < allowance:
        return 0.0
    # Over only through the last window, whose weight fades in this one; or through this window,
    # whose weight fades in the next.
    fades_at = 1 - (allowance - current) / previous if current < allowance else 2 - allowance / current
    return max((fades_at - elapsed) * width, 1.0)
