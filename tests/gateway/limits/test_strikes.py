"""Refusal counts (gateway/limits/strikes.py) against a real redis-server: a burst that straddles a
window boundary stays blocked (the CI run where the 5 guesses of tests/security/test_guessed_keys.py
fell into one window and the next replica's guess into the next, unblocked), and the block's length."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.clients import redis_client
from gateway.limits import strikes as strikes_module
from gateway.limits.strikes import Strikes, blocked_seconds
from gateway.settings.policy import Allowance
from gateway.settings.schema import Settings
from tests.services import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client(Settings(redis_url=redis_server.url))
    yield client
    await client.aclose()


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


async def test_a_burst_across_the_boundary_stays_blocked_on_another_replica(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(1_000_020.0 - 0.5)  # half a second before a 60 s window ends
    monkeypatch.setattr(strikes_module, "time", clock)
    allowance = Allowance(5, 60.0)
    subject = secrets.token_hex(4)
    one, other = Strikes(redis, "test-strikes"), Strikes(redis, "test-strikes")
    for n in range(4):
        assert await one.strike(subject, allowance) == 0.0, n
    left = await one.strike(subject, allowance)
    assert left >= 0.5 and one.blocked_for(subject) > 0
    clock.now += 1.0  # the next window: a fixed window would count from zero here
    assert other.blocked_for(subject) == 0.0  # it has not heard yet
    # 5 * (1 - f) + 1 >= 5 until f = 0.2 of the new window: 12 s less the half second gone.
    assert await other.strike(subject, allowance) == pytest.approx(11.5)
    assert other.blocked_for(subject) > 11
    clock.now += 60.0  # two windows on: all faded
    assert await other.strike(subject, allowance) == 0.0


async def test_a_key_refused_below_its_allowance_is_not_blocked(redis: Redis) -> None:
    strikes = Strikes(redis, "test-strikes")
    subject = secrets.token_hex(4)
    for _ in range(3):
        assert await strikes.strike(subject, Allowance(5, 60.0)) == 0.0
    assert strikes.blocked_for(subject) == 0.0
    assert await strikes.strike(subject, Allowance(0, 60.0)) == 0.0  # off


@pytest.mark.parametrize(
    ("current", "previous", "elapsed", "expected"),
    [
        (4, 0, 0.5, 0.0),  # below
        (5, 0, 0.5, 30.0),  # over in this window: it fades at the start of the next
        (10, 0, 0.5, 60.0),  # twice over: halfway through the next
        (1, 10, 0.1, 30.0),  # over through the last window: 10 * (1 - f) + 1 < 5 once f > 0.6
        (1, 10, 0.59, 1.0),  # nearly faded: at least a second, so Retry-After is never 0
    ],
)
def test_blocked_seconds(current: int, previous: int, elapsed: float, expected: float) -> None:
    assert blocked_seconds(current, previous, elapsed, 5, 60.0) == pytest.approx(expected)
