"""The screen of large bodies (issue 16, point 8): the count a worker makes, and the pool's bounds."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.admission.screen import BodyScreen, ScreenBusy
from gateway.errors import InvalidRequest
from gateway.json_nodes import Verdict, count_nodes, screen


def test_every_value_is_counted_at_any_depth() -> None:
    body = orjson.dumps({"a": [1, "x", None, True, {"b": []}], "c": {}})
    # The object, its two values, the list's five items and the inner object's one value.
    assert screen(body, 100) == Verdict(nodes=9)
    assert count_nodes(7, 100) == 1
    assert count_nodes([[[[]]]], 100) == 4


def test_the_count_stops_soon_after_the_limit() -> None:
    value: list[list[int]] = [[]] * 1_000_000
    assert count_nodes(value, 10) == 1_000_001  # one container past the limit: counted by its length
    assert count_nodes([[0] * 6] * 4, 10) == 11  # stopped at the second list, not counted to 29


def test_invalid_json_comes_back_as_a_message_with_its_position() -> None:
    verdict = screen(b'{"a": [1, 2', 100)
    assert verdict.invalid is not None
    assert "char" in verdict.invalid
    assert verdict.nodes == 0


async def test_the_pool_refuses_too_many_values_and_sheds_what_it_cannot_hold() -> None:
    pool = BodyScreen(1, timeout_s=30)
    try:
        await pool.check(orjson.dumps(list(range(100))), 101)
        with pytest.raises(InvalidRequest) as over:
            await pool.check(orjson.dumps(list(range(100))), 100)
        assert over.value.code == "too_many_json_values"
        with pytest.raises(InvalidRequest) as invalid:
            await pool.check(b"[1,", 100)
        assert "could not parse the JSON body" in invalid.value.message
        # One worker, eight waiting: the tenth large body at once is shed (503, Retry-After).
        heavy = b"[" + b"[]," * 2_000_000 + b"[]]"
        results = await asyncio.gather(*(pool.check(heavy, 10) for _ in range(10)), return_exceptions=True)
        busy = [error for error in results if isinstance(error, ScreenBusy)]
        assert len(busy) == 1
        assert busy[0].status == 503 and busy[0].headers["retry-after"] == "1"
    finally:
        await pool.close()


async def test_a_slow_screen_times_out_with_503() -> None:
    pool = BodyScreen(1, timeout_s=0.05)
    try:
        with pytest.raises(ScreenBusy):
            await pool.check(b"[" + b"[]," * 3_000_000 + b"[]]", 10)
    finally:
        await pool.close()
