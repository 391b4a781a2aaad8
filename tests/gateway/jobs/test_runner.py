"""The durable job runner on a real SQLite file and a real PostgreSQL: submit, claim, run and
complete; retries; cancellation; two runners sharing one database; a runner SIGKILLed mid-job whose
job another runner resumes from its checkpoint with every item answered once; graceful stop."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.jobs import (
    Job,
    JobCancelled,
    JobFailed,
    JobOptions,
    JobQueue,
    JobRunner,
    RunnerPolicy,
    UnknownJobKind,
)
from gateway.store import Database
from tests.gateway.jobs.handlers import RUNS, create_output_table, finished, output, until, write_items
from tests.services import PostgresServer

ROOT = Path(__file__).resolve().parents[3]
LEASE_S = 1.5
_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"jobs_{next(_names)}")
    database = Database(url)
    await database.migrate()
    await create_output_table(database)
    yield database
    await database.close()


def runner_on(database: Database, **policy: Any) -> JobRunner:
    values: dict[str, Any] = {"lease_s": LEASE_S, "poll_s": 0.05, "retry_backoff_s": 0.0, **policy}
    runner = JobRunner(JobQueue(database), RunnerPolicy(**values))
    runner.register("items", write_items)
    return runner


async def test_submit_claim_run_complete(database: Database) -> None:
    runner = runner_on(database)
    job = await runner.submit("items", "tn_a", {"items": 5}, created_by="key_1", user="alice")
    assert (job.status, job.attempts, job.tenant_id, job.created_by, job.user) == (
        "queued",
        0,
        "tn_a",
        "key_1",
        "alice",
    )
    with pytest.raises(UnknownJobKind):
        await runner.submit("nope", "tn_a", {})
    runner.start()
    try:
        done = await finished(runner, job.id)
    finally:
        await runner.stop()
    assert done.status == "completed"
    assert done.result == {"items": 5, "resumed_from": 0}
    assert done.checkpoint == {"next": 5}
    assert done.attempts == 1 and done.last_error is None
    assert done.lease_owner is None and done.lease_expires_at is None
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at
    assert await output(database, job.id) == [0, 1, 2, 3, 4]
    # Another tenant's id is not found, as if it did not exist.
    assert await runner.get(job.id, tenant_id="tn_b") is None
    assert [record.id for record in await runner.queue.list(tenant_id="tn_a")] == [job.id]
    assert await runner.queue.list(tenant_id="tn_b") == []


async def test_an_idle_runner_starts_a_job_submitted_here_at_once(database: Database) -> None:
    """The idle poll is long (TANTRA_JOBS_POLL_S, 5 s by default: each claim costs the idle
    gateway ~2 ms of CPU); a job submitted on this replica wakes its runner instead of waiting for
    it, and so does a run's end, for the next job."""
    runner = runner_on(database, poll_s=60.0, concurrency=1)
    runner.start()
    try:
        await asyncio.sleep(0.2)  # the first claim has found nothing: the runner sleeps its poll
        first = await runner.submit("items", "tn_a", {"items": 1})
        second = await runner.submit("items", "tn_a", {"items": 1})
        assert (await finished(runner, first.id, within_s=10)).status == "completed"
        assert (await finished(runner, second.id, within_s=10)).status == "completed"
    finally:
        await runner.stop()


async def test_priority_runs_first(database: Database) -> None:
    runner = runner_on(database, concurrency=1)
    order: list[str] = []

    async def note(job: Job) -> None:
        order.append(job.payload["name"])

    runner.register("note", note)
    for name, priority in [("low", -1), ("normal", 0), ("high", 5)]:
        await runner.submit("note", None, {"name": name}, options=JobOptions(priority=priority))
    runner.start()
    try:
        await until(lambda: _true(len(order) == 3))
    finally:
        await runner.stop()
    assert order == ["high", "normal", "low"]


async def _true(value: bool) -> bool:
    return value


async def test_a_kind_takes_at_most_its_own_slots(database: Database) -> None:
    runner = runner_on(database, concurrency=4)
    running = {"long": 0, "short": 0}
    peak = {"long": 0, "short": 0}

    async def tracked(job: Job) -> None:
        kind = job.payload["kind"]
        running[kind] += 1
        peak[kind] = max(peak[kind], running[kind])
        await asyncio.sleep(0.3 if kind == "long" else 0.05)
        running[kind] -= 1

    runner.register("long", tracked, concurrency=1)
    runner.register("short", tracked)
    longs = [await runner.submit("long", None, {"kind": "long"}) for _ in range(3)]
    shorts = [await runner.submit("short", None, {"kind": "short"}) for _ in range(6)]
    runner.start()
    try:
        for job in [*longs, *shorts]:
            assert (await finished(runner, job.id)).status == "completed"
    finally:
        await runner.stop()
    assert peak["long"] == 1 and peak["short"] >= 2


async def test_failures_are_retried_then_fail(database: Database) -> None:
    runner = runner_on(database)
    calls: dict[str, int] = {}

    async def flaky(job: Job) -> str:
        calls[job.id] = calls.get(job.id, 0) + 1
        if job.payload["mode"] == "always" or job.attempt < 2:
            raise RuntimeError(f"boom on attempt {job.attempt}")
        return "ok"

    async def refuses(job: Job) -> None:
        raise JobFailed("line 3 is not JSON")

    runner.register("flaky", flaky, max_attempts=3)
    runner.register("refuses", refuses)
    once = await runner.submit("flaky", "tn", {"mode": "once"})
    always = await runner.submit("flaky", "tn", {"mode": "always"}, options=JobOptions(max_attempts=2))
    permanent = await runner.submit("refuses", "tn", {})
    runner.start()
    try:
        recovered = await finished(runner, once.id)
        exhausted = await finished(runner, always.id)
        refused = await finished(runner, permanent.id)
    finally:
        await runner.stop()
    assert (recovered.status, recovered.attempts, recovered.result) == ("completed", 2, "ok")
    assert recovered.last_error == "RuntimeError: boom on attempt 1"
    assert (exhausted.status, exhausted.attempts, calls[always.id]) == ("failed", 2, 2)
    assert exhausted.last_error == "RuntimeError: boom on attempt 2"
    assert (refused.status, refused.attempts, refused.last_error) == ("failed", 1, "line 3 is not JSON")


async def test_retry_waits_for_its_backoff(database: Database) -> None:
    runner = runner_on(database, retry_backoff_s=1.0)
    starts: list[float] = []

    async def fails_once(job: Job) -> None:
        starts.append(time.monotonic())
        if job.attempt == 1:
            raise RuntimeError("transient")

    runner.register("fails_once", fails_once)
    job = await runner.submit("fails_once", None, {})
    runner.start()
    try:
        assert (await finished(runner, job.id)).status == "completed"
    finally:
        await runner.stop()
    assert starts[1] - starts[0] >= 0.9


async def test_cancel(database: Database) -> None:
    runner = runner_on(database, concurrency=1)

    async def until_cancelled(job: Job) -> None:
        done = (job.checkpoint or {}).get("steps", 0)
        while True:
            try:
                job.check()
            except JobCancelled:
                raise JobCancelled({"steps": done}) from None
            await asyncio.sleep(0.05)
            done += 1
            await job.save({"steps": done})

    runner.register("loop", until_cancelled)
    # Queued: cancelled at once, never run.
    queued = await runner.submit("items", "tn", {"items": 1})
    cancelled = await runner.cancel(queued.id, tenant_id="tn")
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert await runner.cancel(queued.id, tenant_id="tn_other") is None
    # Running, cancelled from outside (another replica's queue): the handler sees it at the
    # runner's next lease renewal and ends with its result.
    outside = JobQueue(database)
    running = await runner.submit("loop", "tn", {})
    runner.start()
    try:
        await until(lambda: _status(runner, running.id, "running"))
        marked = await outside.request_cancel(running.id, tenant_id="tn")
        assert marked is not None and marked.status == "running" and marked.cancel_requested
        ended = await finished(runner, running.id, within_s=LEASE_S * 3)
        assert ended.status == "cancelled" and ended.result["steps"] >= 1
        # On the replica running it, cancellation is seen at once.
        local = await runner.submit("loop", "tn", {})
        await until(lambda: _status(runner, local.id, "running"))
        started = time.monotonic()
        await runner.cancel(local.id)
        assert (await finished(runner, local.id)).status == "cancelled"
        assert time.monotonic() - started < LEASE_S / 3
    finally:
        await runner.stop()
    assert await output(database, queued.id) == []


async def _status(runner: JobRunner, job_id: str, status: str) -> bool:
    record = await runner.get(job_id)
    return record is not None and record.status == status


async def test_two_runners_run_each_job_once(database: Database) -> None:
    second = Database(str(database.url.render_as_string(hide_password=False)))
    # A lease long enough that no renewal misses it on a loaded machine: a lost lease rightly lets the
    # other runner run the job again (its output still lands once), which is another test's subject.
    runners = [runner_on(database, concurrency=2, lease_s=10), runner_on(second, concurrency=2, lease_s=10)]
    ran: dict[str, list[str]] = {}

    async def record_run(job: Job) -> None:
        ran.setdefault(job.id, []).append(job.token)
        await asyncio.sleep(0.1)
        async with job.transaction() as step:
            await step.session.execute(
                text("INSERT INTO job_test_output (job_id, item) VALUES (:job, 0)"), {"job": job.id}
            )

    for runner in runners:
        runner.register("once", record_run)
    jobs = [await runners[0].submit("once", "tn", {"n": n}) for n in range(16)]
    for runner in runners:
        runner.start()
    try:
        records = [await finished(runners[0], job.id) for job in jobs]
    finally:
        for runner in runners:
            await runner.stop()
        await second.close()
    assert {record.status for record in records} == {"completed"}
    assert all(len(ran[job.id]) == 1 for job in jobs)
    assert [await output(database, job.id) for job in jobs] == [[0]] * len(jobs)
    by_runner = {token.rsplit(":", 1)[0] for tokens in ran.values() for token in tokens}
    assert by_runner == {runner.name for runner in runners}, "both runners took jobs"


async def test_a_run_that_lost_its_lease_writes_nothing(database: Database) -> None:
    """The fence itself: a run whose lease expired and was claimed by another runner cannot commit
    its work, and the new run's checkpoint is the one kept."""
    queue = JobQueue(database)
    job = await queue.submit("items", "tn", {"items": 1}, options=JobOptions(max_attempts=3))
    first = await queue.claim("runner-a:1", ["items"], lease_s=0.2)
    assert first is not None and first.id == job.id
    assert await queue.claim("runner-b:1", ["items"], lease_s=10) is None  # held
    await asyncio.sleep(0.3)
    second = await queue.claim("runner-b:1", ["items"], lease_s=10)
    assert second is not None and second.id == job.id and second.attempts == 2
    stale = Job(first, "runner-a:1", queue, lease_s=0.2, pacer=runner_on(database).pacer)
    with pytest.raises(Exception) as lost:
        async with stale.transaction() as step:
            await step.session.execute(
                text("INSERT INTO job_test_output (job_id, item) VALUES (:job, 7)"), {"job": job.id}
            )
            step.checkpoint({"next": 99})
    assert type(lost.value).__name__ == "LeaseLost" and stale.lost
    current = await queue.get(job.id)
    assert current is not None and current.checkpoint is None and current.lease_owner == "runner-b:1"
    assert await output(database, job.id) == []
    assert not await queue.finish(job.id, "runner-a:1", "completed")
    assert await queue.finish(job.id, "runner-b:1", "completed")


async def test_deleting_a_running_job_stops_its_writes(database: Database) -> None:
    runner = runner_on(database)
    job = await runner.submit("items", "tn", {"items": 1000, "delay": 0.02}, user="erased-user")
    other = await runner.submit("items", "tn", {"items": 1}, user="someone")
    assert [record.id for record in await runner.queue.list(user="erased-user")] == [job.id]
    runner.start()
    try:
        await until(lambda: _answered_at_least(database, job.id, 3))
        assert not await runner.queue.delete(job.id, tenant_id="tn_other")
        assert await runner.queue.delete(job.id, tenant_id="tn")
        await until(lambda: _true(not runner.running or job.id not in {j.id for j in runner.running}))
        after = len(await output(database, job.id))
        await asyncio.sleep(0.3)
        assert len(await output(database, job.id)) == after
        assert await runner.get(job.id) is None
        assert (await finished(runner, other.id)).status == "completed"
    finally:
        await runner.stop()


async def test_a_job_abandoned_on_every_attempt_fails(database: Database) -> None:
    queue = JobQueue(database)
    job = await queue.submit("items", "tn", {"items": 1}, options=JobOptions(max_attempts=1))
    assert await queue.claim("dead:1", ["items"], lease_s=0.1) is not None
    await asyncio.sleep(0.2)
    assert await queue.claim("live:1", ["items"], lease_s=10) is None
    assert await queue.fail_abandoned(["items"]) == 1
    failed = await queue.get(job.id)
    assert failed is not None and failed.status == "failed" and "lease expired" in (failed.last_error or "")


async def test_sigkilled_runner_is_taken_over_and_each_item_answered_once(database: Database) -> None:
    url = database.url.render_as_string(hide_password=False)
    runner = runner_on(database)
    items = 40
    job = await runner.submit("items", "tn", {"items": items, "delay": 0.05})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.jobs.crash_runner",
        url,
        str(LEASE_S),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await until(lambda: _answered_at_least(database, job.id, 8), within_s=60)
        os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    before = await output(database, job.id)
    assert before == list(range(len(before))) and 8 <= len(before) < items
    runner.start()
    try:
        done = await finished(runner, job.id, within_s=60)
    finally:
        await runner.stop()
    assert done.status == "completed" and done.attempts == 2
    assert done.result["resumed_from"] >= len(before)
    # The lease had to run out first: the dead runner renewed it at each item, every 50 ms.
    [(_, resumed_at, resumed_from)] = [run for run in RUNS if run[0] == job.id]
    assert resumed_at - killed_at >= LEASE_S - 0.2
    assert resumed_from == done.result["resumed_from"]
    assert await output(database, job.id) == list(range(items)), "each item exactly once"


async def test_sigkill_inside_a_transaction_leaves_nothing_of_it(database: Database) -> None:
    """Killed after writing item 5's row and before its commit: the row is gone with the run, and
    the next run answers item 5 (and the rest) once."""
    runner = runner_on(database)
    job = await runner.submit("items", "tn", {"items": 12, "hold_at": 5})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.gateway.jobs.crash_runner",
        database.url.render_as_string(hide_password=False),
        str(LEASE_S),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        while (line := await asyncio.wait_for(process.stdout.readline(), 60)) != b"holding 5\n":
            assert line, "the runner exited"
        process.kill()
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
    assert await output(database, job.id) == [0, 1, 2, 3, 4]
    runner.start()
    try:
        done = await finished(runner, job.id, within_s=60)
    finally:
        await runner.stop()
    assert (done.status, done.attempts, done.result["resumed_from"]) == ("completed", 2, 5)
    assert await output(database, job.id) == list(range(12))


async def _answered_at_least(database: Database, job_id: str, count: int) -> bool:
    return len(await output(database, job_id)) >= count


async def test_graceful_stop_gives_jobs_back_at_their_checkpoint(database: Database) -> None:
    runner = runner_on(database, concurrency=2, stop_grace_s=1.0)
    stubborn_started = asyncio.Event()

    async def stubborn(job: Job) -> None:
        """Ignores the stop: interrupted at the grace's end, its open transaction rolled back. (On
        SQLite an open write transaction holds the one write lock, which would block every other
        writer: there it waits outside its transaction, as handlers should.)"""
        async with job.transaction() as step:
            await step.session.execute(
                text("INSERT INTO job_test_output (job_id, item) VALUES (:job, 0)"), {"job": job.id}
            )
            stubborn_started.set()
            if not database.is_sqlite:
                await asyncio.sleep(3600)
        await asyncio.sleep(3600)

    runner.register("stubborn", stubborn)
    job = await runner.submit("items", "tn", {"items": 100, "delay": 0.02})
    held = await runner.submit("stubborn", "tn", {})
    runner.start()
    await until(lambda: _answered_at_least(database, job.id, 5))
    await stubborn_started.wait()
    started = time.monotonic()
    await runner.stop()
    assert time.monotonic() - started < 1.0 + LEASE_S
    for job_id in (job.id, held.id):
        back = await runner.get(job_id)
        assert back is not None and back.status == "queued", back
        assert back.attempts == 0 and back.lease_owner is None
    back = await runner.get(job.id)
    assert back is not None and back.checkpoint is not None
    answered = await output(database, job.id)
    assert answered == list(range(back.checkpoint["next"]))
    assert await output(database, held.id) == ([] if not database.is_sqlite else [0])
    # Another runner (a replica still up) takes the job back at once, from its checkpoint.
    successor = runner_on(database)
    successor.start()
    try:
        done = await finished(successor, job.id, within_s=60)
    finally:
        await successor.stop()
    assert done.status == "completed" and done.attempts == 1
    assert done.result["resumed_from"] == back.checkpoint["next"]
    assert await output(database, job.id) == list(range(100))


async def test_draining_replica_stops_claiming_and_gives_back(database: Database) -> None:
    draining = False
    runner = JobRunner(
        JobQueue(database), RunnerPolicy(lease_s=LEASE_S, poll_s=0.05), draining=lambda: draining
    )
    runner.register("items", write_items)
    job = await runner.submit("items", "tn", {"items": 500, "delay": 0.02})
    runner.start()
    await until(lambda: _answered_at_least(database, job.id, 3))
    draining = True
    await until(lambda: _status(runner, job.id, "queued"), within_s=5)
    later = await runner.submit("items", "tn", {"items": 1})
    await asyncio.sleep(0.3)
    assert await _status(runner, later.id, "queued"), "a draining replica claims nothing"
    await runner.stop()
