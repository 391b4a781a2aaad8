"""The pacer: background turns are capped per replica and wait while interactive traffic is high;
the claim statement locks with SKIP LOCKED on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite

from gateway.jobs import Pacer
from gateway.jobs.queue import claim_statement


async def test_turns_are_capped_and_yield_to_interactive_requests() -> None:
    in_flight = 0
    pacer = Pacer(2, in_flight=lambda: in_flight + pacer.active, yield_at=3, poll_s=0.01)
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with pacer.turn():
            peak = max(peak, pacer.active)
            await asyncio.sleep(0.02)

    await asyncio.gather(*(one() for _ in range(8)))
    assert peak == 2 and pacer.waited == 0
    # Three interactive requests in flight (the pacer's own turns are not counted as interactive):
    # a new turn waits until they drop below the threshold.
    in_flight = 3
    waiting = asyncio.create_task(one())
    await asyncio.sleep(0.1)
    assert not waiting.done() and pacer.waited == 1
    in_flight = 2
    await asyncio.wait_for(waiting, 2)
    # 0 never waits.
    pacer.yield_at = 0
    in_flight = 1000
    await asyncio.wait_for(one(), 2)


def test_claim_skips_locked_rows_on_postgresql_and_is_one_statement_on_sqlite() -> None:
    statement = claim_statement("owner:1", ["batch"], 30, datetime(2026, 12, 5))
    on_postgresql = str(statement.compile(dialect=postgresql.dialect()))
    assert on_postgresql.startswith("UPDATE jobs SET")
    assert "FOR UPDATE SKIP LOCKED" in on_postgresql and "RETURNING" in on_postgresql
    on_sqlite = str(statement.compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE" not in on_sqlite and "RETURNING" in on_sqlite
