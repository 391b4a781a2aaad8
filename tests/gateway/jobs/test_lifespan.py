"""The runner in a gateway: built by the composition root from TANTRA_JOBS_*, started and stopped
with the app's lifespan, off when TANTRA_JOBS_ENABLED is false, and given back at the drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from gateway import Settings, create_app
from gateway.jobs import JobRunner
from gateway.store import Database
from tests.gateway.jobs.handlers import create_output_table, finished, output, until, write_items


async def test_the_gateway_runs_jobs_and_gives_them_back_at_the_drain(
    gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        jobs_lease_s=1.5,
        jobs_poll_s=0.05,
        jobs_concurrency=3,
        jobs_request_slots=2,
        jobs_yield_in_flight=5,
    )
    app = create_app(settings)
    parts = app.state.components
    jobs: JobRunner = parts.shared.jobs
    assert (jobs.policy.concurrency, jobs.policy.lease_s, jobs.pacer.yield_at) == (3, 1.5, 5)
    jobs.register("items", write_items)
    async with app.router.lifespan_context(app):
        await create_output_table(parts.shared.database)
        quick = await jobs.submit("items", "tn", {"items": 3}, created_by="key_1")
        long = await jobs.submit("items", "tn", {"items": 1000, "delay": 0.02})
        assert (await finished(jobs, quick.id)).status == "completed"
        await until(lambda: _answered(parts.shared.database, long.id, 3))
        # SIGTERM's drain: the runner stops claiming and the running job checkpoints and gives its
        # lease back at its next step, well before the server would exit.
        parts.drain.begin(5.0, lambda: None)
        await until(lambda: _queued(jobs, long.id), within_s=5)
        back = await jobs.get(long.id)
        assert back is not None and back.attempts == 0 and back.checkpoint is not None
        assert await output(parts.shared.database, long.id) == list(range(back.checkpoint["next"]))


async def test_jobs_disabled_accepts_but_does_not_run(
    gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    app = create_app(
        gateway_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'off.db'}", jobs_enabled=False)
    )
    jobs: JobRunner = app.state.components.shared.jobs
    jobs.register("items", write_items)
    async with app.router.lifespan_context(app):
        job = await jobs.submit("items", "tn", {"items": 1})
        await asyncio.sleep(0.5)
        record = await jobs.get(job.id)
        assert record is not None and record.status == "queued" and record.attempts == 0


async def _answered(database: Database, job_id: str, count: int) -> bool:
    return len(await output(database, job_id)) >= count


async def _queued(jobs: JobRunner, job_id: str) -> bool:
    record = await jobs.get(job_id)
    return record is not None and record.status == "queued"
