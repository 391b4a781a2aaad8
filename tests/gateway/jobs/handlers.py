"""Job handlers the runner's tests share with the runner they run in a subprocess (crash_runner.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from gateway.jobs import Job, JobRecord, JobRunner
from gateway.store import Database

# The handlers' output: one row per item answered, with no unique constraint, so a duplicate shows.
OUTPUT_TABLE = (
    "CREATE TABLE IF NOT EXISTS job_test_output (job_id VARCHAR(40) NOT NULL, item INTEGER NOT NULL)"
)


# Each run of `write_items` in this process: (job id, when it began, the item it began at).
RUNS: list[tuple[str, float, int]] = []


async def create_output_table(database: Database) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(text(OUTPUT_TABLE))


async def output(database: Database, job_id: str) -> list[int]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT item FROM job_test_output WHERE job_id = :job ORDER BY item"), {"job": job_id}
        )
        return [row[0] for row in rows]


async def write_items(job: Job) -> dict[str, Any]:
    """Answers items `0..payload.items-1`, each item's row and the checkpoint after it in one
    transaction; half of each item's delay is spent inside that transaction, so a kill often lands
    between the row's write and its commit. On its first attempt it stops for good inside the
    transaction of item `payload.hold_at`, after saying so on stdout."""
    start = (job.checkpoint or {}).get("next", 0)
    RUNS.append((job.id, time.monotonic(), start))
    delay = float(job.payload.get("delay", 0))
    for item in range(start, int(job.payload["items"])):
        job.check()
        await asyncio.sleep(delay / 2)
        async with job.transaction() as step:
            await step.session.execute(
                text("INSERT INTO job_test_output (job_id, item) VALUES (:job, :item)"),
                {"job": job.id, "item": item},
            )
            await asyncio.sleep(delay / 2)
            if item == job.payload.get("hold_at") and job.attempt == 1:
                # For a test to kill the process here: the row is written, not committed.
                print(f"holding {item}", flush=True)
                await asyncio.sleep(3600)
            step.checkpoint({"next": item + 1})
    return {"items": job.payload["items"], "resumed_from": start}


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def finished(runner: JobRunner, job_id: str, within_s: float = 30.0) -> JobRecord:
    async def done() -> bool:
        record = await runner.get(job_id)
        return record is not None and record.done

    await until(done, within_s)
    record = await runner.get(job_id)
    assert record is not None
    return record
