"""Issue 16, point 16 (budgets): when the ledger cannot seed a budget counter, the configured failure
policy applies to that budget, and to nothing else: `closed` refuses the request (503), `open` serves
it without that budget while every other limit of the request, and of every other request, is still
enforced (before, a ledger error stopped all limits of the replica as if Redis were down)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import pytest
from redis.asyncio import Redis

from gateway.errors import LimiterUnavailable, QuotaExceeded, RateLimited
from gateway.limits import Demand, RateLimiter, Scope
from gateway.store import Limits


class Ledger:
    """A ledger that fails until it is told to answer."""

    def __init__(self) -> None:
        self.up = False
        self.asked = 0

    async def seed(self, kind: str, scope_id: str, since: datetime) -> tuple[int, int]:
        self.asked += 1
        if not self.up:
            raise ConnectionError("the database is unreachable")
        return 1000, 0


def _limiter(redis: Redis, ledger: Ledger, mode: Literal["open", "closed"], prefix: str) -> RateLimiter:
    return RateLimiter(redis, window_s=60, lease_s=60, failure_mode=mode, seed=ledger.seed, prefix=prefix)


async def test_fail_open_leaves_out_the_budget_alone(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger, "open", "sec-seed-open")
    budgeted = Scope("key", "k-budget", Limits(rpm=1, budget_tokens=1000))
    other = Scope("key", "k-other", Limits(rpm=1))
    first = await limiter.reserve([budgeted], Demand(10))
    assert first.enforced, "a ledger error turned every limit of the request off"
    with pytest.raises(RateLimited):
        await limiter.reserve([budgeted], Demand(10))  # its RPM still holds
    await limiter.reserve([other], Demand(10))
    with pytest.raises(RateLimited):
        await limiter.reserve([other], Demand(10))  # and other keys' limits too
    # The ledger is back: the budget is seeded (1000 used of 1000) and enforced.
    ledger.up = True
    with pytest.raises(QuotaExceeded):
        await limiter.reserve([Scope("key", "k-budget", Limits(budget_tokens=1000))], Demand(10))


async def test_fail_closed_refuses_the_request(redis: Redis) -> None:
    ledger = Ledger()
    limiter = _limiter(redis, ledger, "closed", "sec-seed-closed")
    scope = Scope("key", "k-closed", Limits(rpm=5, budget_tokens=1000))
    with pytest.raises(LimiterUnavailable) as caught:
        await limiter.reserve([scope], Demand(10))
    assert caught.value.status == 503
    ledger.up = True
    with pytest.raises(QuotaExceeded):
        await limiter.reserve([scope], Demand(10))
