"""The Redis limiter on its own, against a real redis-server: windows, reservations, settlement."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from redis.asyncio import Redis

from gateway.clients import redis_client
from gateway.errors import QuotaExceeded, RateLimited
from gateway.limits import Demand, RateLimiter, Scope, format_duration
from gateway.settings.schema import Settings
from gateway.store import Limits
from tests.services import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = redis_client(Settings(redis_url=redis_server.url))
    yield client
    await client.aclose()


def limiter(
    redis: Redis, *, window_s: int = 60, seeded: tuple[int, int] = (0, 0), prefix: str
) -> RateLimiter:
    async def seed(kind: str, scope_id: str, since: datetime) -> tuple[int, int]:
        return seeded

    return RateLimiter(redis, window_s=window_s, lease_s=60, failure_mode="open", seed=seed, prefix=prefix)


def key_scope(**limits: object) -> Scope:
    return Scope("key", "k1", Limits(**limits))  # type: ignore[arg-type]


async def test_requests_window(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-rpm")
    scope = key_scope(rpm=3)
    seen = [await rl.reserve([scope], Demand(10)) for _ in range(3)]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in seen] == ["2", "1", "0"]
    assert seen[0].headers["x-ratelimit-limit-requests"] == "3"
    with pytest.raises(RateLimited) as caught:
        await rl.reserve([scope], Demand(10))
    error = caught.value
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert 59 <= int(error.headers["retry-after"]) <= 60
    assert 58_000 < int(error.headers["retry-after-ms"]) <= 60_000
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


async def test_a_window_slides(redis: Redis) -> None:
    rl = limiter(redis, window_s=1, prefix="t-slide")
    scope = key_scope(rpm=2)
    await rl.reserve([scope], Demand(1))
    await asyncio.sleep(0.5)
    await rl.reserve([scope], Demand(1))
    with pytest.raises(RateLimited) as caught:
        await rl.reserve([scope], Demand(1))
    # The first request leaves the window about half a second from now, not a whole window.
    assert int(caught.value.headers["retry-after-ms"]) <= 550
    await asyncio.sleep(int(caught.value.headers["retry-after-ms"]) / 1000 + 0.02)
    await rl.reserve([scope], Demand(1))


async def test_tokens_are_reserved_then_settled(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-tpm")
    scope = key_scope(tpm=100)
    first = await rl.reserve([scope], Demand(60))
    assert first.headers["x-ratelimit-remaining-tokens"] == "40"
    with pytest.raises(RateLimited) as caught:
        await rl.reserve([scope], Demand(60))
    assert caught.value.type == "tokens"
    await rl.settle(first, tokens=15)  # it used far less than it reserved
    second = await rl.reserve([scope], Demand(60))
    assert second.headers["x-ratelimit-remaining-tokens"] == "25"
    await rl.settle(second, tokens=0)  # failed: nothing used
    assert (await rl.reserve([scope], Demand(1))).headers["x-ratelimit-remaining-tokens"] == "84"


async def test_request_larger_than_the_limit(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-large")
    with pytest.raises(RateLimited) as caught:
        await rl.reserve([key_scope(tpm=100)], Demand(101))
    assert caught.value.headers == {"x-should-retry": "false"}
    assert "Request too large" in caught.value.message


async def test_all_limits_or_none(redis: Redis) -> None:
    """A request refused by one scope reserves nothing in the others."""
    rl = limiter(redis, prefix="t-atomic")
    key = key_scope(rpm=10, tpm=1000)
    tenant = Scope("tenant", "t1", Limits(rpm=1))
    await rl.reserve([key, tenant], Demand(100))
    with pytest.raises(RateLimited):
        await rl.reserve([key, tenant], Demand(100))
    # The tenant's limits lifted: only the first request holds the key's (a key's counters are
    # tagged with its tenant, so the key is asked with its tenant).
    alone = await rl.reserve([key, dataclasses.replace(tenant, limits=Limits())], Demand(100))
    assert alone.headers["x-ratelimit-remaining-requests"] == "8"
    assert alone.headers["x-ratelimit-remaining-tokens"] == "800"


async def test_headers_show_the_tightest_scope(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-tight")
    reservation = await rl.reserve(
        [key_scope(rpm=100, tpm=50_000), Scope("tenant", "t1", Limits(rpm=5, tpm=100_000))], Demand(10)
    )
    assert reservation.headers["x-ratelimit-limit-requests"] == "5"
    assert reservation.headers["x-ratelimit-limit-tokens"] == "50000"


async def test_concurrency_slots_are_released(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-conc")
    scope = key_scope(max_concurrent=2)
    held = [await rl.reserve([scope], Demand(1)) for _ in range(2)]
    with pytest.raises(RateLimited) as caught:
        await rl.reserve([scope], Demand(1))
    assert "concurrent" in caught.value.message
    assert caught.value.headers["retry-after"] == "1"
    await rl.settle(held[0], tokens=1)
    await rl.settle(held[0], tokens=1)  # settling twice changes nothing
    held.append(await rl.reserve([scope], Demand(1)))
    with pytest.raises(RateLimited):
        await rl.reserve([scope], Demand(1))


async def test_token_budget_seeded_from_the_ledger(redis: Redis) -> None:
    rl = limiter(redis, seeded=(950, 0), prefix="t-budget")
    scope = key_scope(budget_tokens=1000, budget_period="day")
    first = await rl.reserve([scope], Demand(40))
    with pytest.raises(QuotaExceeded) as caught:
        await rl.reserve([scope], Demand(40))
    error = caught.value
    assert (error.status, error.type, error.code) == (429, "insufficient_quota", "insufficient_quota")
    assert error.headers == {"x-should-retry": "false"}
    await rl.settle(first, tokens=10)  # 960 used: 40 fit again
    await rl.reserve([scope], Demand(40))


async def test_a_settlement_sent_twice_lands_once(redis: Redis) -> None:
    """A settlement retried after an answer that came too late must not move a budget twice."""
    rl = limiter(redis, seeded=(900, 0), prefix="t-settle-once")
    scope = key_scope(budget_tokens=1000, budget_period="day")
    first = await rl.reserve([scope], Demand(50))  # 950 held
    await rl.settle(first, tokens=10)  # 910
    first.settled = False
    await rl.settle(first, tokens=10)  # sent again: still 910, not 870
    await rl.reserve([scope], Demand(90))
    with pytest.raises(QuotaExceeded):
        await rl.reserve([scope], Demand(1))


async def test_four_unseeded_budgets_are_all_seeded_before_the_answer(redis: Redis) -> None:
    """A key and its tenant each with a token and a spend budget, first use in the period: four
    counters to seed from the ledger, and the request is admitted, not refused as if spent."""
    rl = limiter(redis, seeded=(10, 10), prefix="t-four-budgets")
    limits = {"budget_tokens": 1000, "budget_usd": 1.0, "budget_period": "day"}
    scopes = [key_scope(**limits), Scope("tenant", "t1", Limits(**limits))]  # type: ignore[arg-type]
    reservation = await rl.reserve(scopes, Demand(40, 40))
    assert reservation.enforced


async def test_spend_budget(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-spend")
    scope = key_scope(budget_usd=0.001)  # 1000 micro-USD
    first = await rl.reserve([scope], Demand(10, cost_micros=900))
    with pytest.raises(QuotaExceeded) as caught:
        await rl.reserve([scope], Demand(10, cost_micros=200))
    assert "spend" in caught.value.message
    await rl.settle(first, tokens=10, cost_micros=700)
    await rl.reserve([scope], Demand(10, cost_micros=200))


async def test_no_limits_no_redis(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-none")
    reservation = await rl.reserve([key_scope()], Demand(10))
    assert not reservation.enforced and reservation.headers == {}


async def test_concurrent_reservations_never_overshoot(redis: Redis) -> None:
    rl = limiter(redis, prefix="t-race")
    scope = key_scope(rpm=25, tpm=10_000)

    async def one() -> bool:
        try:
            await rl.reserve([scope], Demand(100))
            return True
        except RateLimited:
            return False

    admitted = await asyncio.gather(*(one() for _ in range(200)))
    assert sum(admitted) == 25


def test_format_duration() -> None:
    assert [format_duration(ms) for ms in (0, 20, 999, 1000, 1500, 17_280, 59_999, 60_000, 360_000)] == [
        "0ms",
        "20ms",
        "999ms",
        "1s",
        "1.5s",
        "17.28s",
        "59.999s",
        "1m0s",
        "6m0s",
    ]


async def _audio_seconds_reserved_then_settled(redis: Redis, prefix: str) -> None:
    rl = limiter(redis, prefix=prefix)
    key = key_scope(audio_spm=5)
    tenant = Scope("tenant", "t1", Limits(audio_spm=100))
    # The request's own reservation holds no audio check: audio is reserved once decoded.
    assert not (await rl.reserve([key, tenant], Demand(10))).enforced
    first = await rl.reserve_audio([key, tenant], 2.0)
    assert first.headers["x-ratelimit-limit-audio-seconds"] == "5"  # the tightest scope's
    assert first.headers["x-ratelimit-remaining-audio-seconds"] == "3"
    assert first.headers["x-ratelimit-reset-audio-seconds"].endswith("s")
    second = await rl.reserve_audio([key, tenant], 2.5)
    assert second.headers["x-ratelimit-remaining-audio-seconds"] == "0"  # 0.5 s left, whole seconds shown
    with pytest.raises(RateLimited) as caught:
        await rl.reserve_audio([key, tenant], 1.0)
    error = caught.value
    assert (error.status, error.type, error.code, error.limit) == (
        429,
        "audio_seconds",
        "rate_limit_exceeded",
        "audio_spm",
    )
    assert 1 <= int(error.headers["retry-after"]) <= 60
    assert error.headers["x-ratelimit-limit-audio-seconds"] == "5"
    assert error.headers["x-ratelimit-remaining-audio-seconds"] == "0"
    assert "audio seconds" in error.message
    await rl.settle(second, tokens=0, audio_seconds=0.0)  # its transcription never ran
    third = await rl.reserve_audio([key, tenant], 1.0)
    assert third.headers["x-ratelimit-remaining-audio-seconds"] == "2"
    with pytest.raises(RateLimited) as alone:
        await rl.reserve_audio([key], 6.0)
    assert alone.value.headers["x-should-retry"] == "false"
    # Without the limit, audio is not counted at all.
    assert not (await rl.reserve_audio([key_scope(tpm=10)], 600.0)).enforced


async def test_audio_seconds_reserved_then_settled(redis: Redis) -> None:
    await _audio_seconds_reserved_then_settled(redis, "t-audio")


async def test_audio_seconds_in_process() -> None:
    """`memory://`: fakeredis runs the same Lua."""
    from fakeredis import FakeAsyncRedis

    await _audio_seconds_reserved_then_settled(FakeAsyncRedis(), "t-audio-mem")


async def test_an_uncertain_reservation_settles_all_but_its_budgets(redis: Redis) -> None:
    """Redis answered too late: the request may hold its reservation, so its slot and tokens are
    settled; its budget is not, as settling by difference needs the reservation to have been made."""
    rl = limiter(redis, prefix="t-uncertain")
    scope = key_scope(tpm=1000, max_concurrent=1, budget_tokens=100)
    held = await rl.reserve([scope], Demand(60))
    await rl.settle(dataclasses.replace(held, enforced=False, uncertain=True), tokens=0)
    with pytest.raises(QuotaExceeded):  # the slot is free, but the 60 tokens stay on the budget
        await rl.reserve([scope], Demand(60))
    assert (await rl.reserve([scope], Demand(40))).headers["x-ratelimit-remaining-tokens"] == "960"
