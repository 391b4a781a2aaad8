"""Eval runs against a real SQLite store and job queue with a scripted app in place of the gateway
(the real engine's run: test_eval_regression.py): the schedule's slot job, due sets, the version
comparison and the metric; the migration matches the tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from starlette.types import Receive, Scope, Send

from gateway.jobs import JobQueue, JobRunner, RunnerPolicy
from gateway.observability.metrics import GatewayMetrics
from gateway.services.eval_runs import RUN_KIND, SCHEDULE_KIND, EvalOptions, EvalRuns
from gateway.services.evals import parse_jsonl
from gateway.store import Database
from gateway.store.evals import EvalSetRow, EvalStore


class Catalog:
    def __init__(self) -> None:
        self.root = "/ckpt/v1"

    async def refresh(self) -> None:
        return None

    async def resolve(self, name: str) -> dict[str, Any]:
        return {"id": name, "root": self.root}


class App:
    """Answers every chat completion with `answer`, and records who it acted as."""

    def __init__(self) -> None:
        self.answer = "4"
        self.acting: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.acting.append(scope.get("tantra.acting_as"))
        await receive()
        body = orjson.dumps({"choices": [{"index": 0, "message": {"content": self.answer}}]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'evals.db'}")
    await database.migrate()
    yield database
    await database.close()


def build(database: Database, now: list[datetime]) -> tuple[EvalRuns, Catalog, App, GatewayMetrics]:
    runner = JobRunner(JobQueue(database), RunnerPolicy(), enabled=False)
    catalog, app, metrics = Catalog(), App(), GatewayMetrics()
    options = EvalOptions(schedule_s=300, margin=0.1, max_items=10)
    evals = EvalRuns(EvalStore(database), runner, cast(Any, catalog), metrics, options, clock=lambda: now[0])
    evals.register()
    evals.bind(app)
    return evals, catalog, app, metrics


async def test_versions_are_compared_and_the_alert_raised_and_cleared(database: Database) -> None:
    now = [datetime(2026, 1, 1)]
    evals, catalog, app, metrics = build(database, now)
    items = parse_jsonl('{"input": "2+2?", "expected": "4"}\n{"input": "3+3?", "expected": "6"}', 10)
    row = await evals.store.add_set(
        EvalSetRow(
            id="evalset_a",
            tenant_id="tn_a",
            created_by="key_a",
            name="a",
            model="m",
            items=[item.as_json() for item in items],
            interval_s=3600,
            created_at=now[0],
        )
    )
    first = await evals.run(row)
    assert (first.version, first.score, first.regression, first.previous_version) == (
        "/ckpt/v1",
        0.5,
        False,
        None,
    )
    assert {call.key_id for call in app.acting} == {"key_a"}  # as the set's key
    catalog.root, app.answer = "/ckpt/v2", "no"
    second = await evals.run(row)
    assert second.score == 0.0 and second.regression and second.previous_version == "/ckpt/v1"
    assert metrics.eval_regression.labels("evalset_a", "m")._value.get() == 1
    assert metrics.eval_score.labels("evalset_a", "m")._value.get() == 0.0
    catalog.root, app.answer = "/ckpt/v3", "4"  # compared with v2 now: no longer worse
    third = await evals.run(row)
    assert third.previous_version == "/ckpt/v2" and not third.regression
    assert metrics.eval_regression.labels("evalset_a", "m")._value.get() == 0
    assert [run.version for run in await evals.store.runs(row.id)] == ["/ckpt/v1", "/ckpt/v2", "/ckpt/v3"]


async def test_the_schedule_submits_due_sets_once_per_slot(database: Database) -> None:
    now = [datetime(2026, 1, 1, 0, 1)]
    evals, _, _, _ = build(database, now)
    for name, interval in (("scheduled", 3600.0), ("on_request", None)):
        await evals.store.add_set(
            EvalSetRow(
                id=f"evalset_{name}", name=name, model="m", items=[], interval_s=interval, created_at=now[0]
            )
        )
    await evals.schedule()
    await evals.schedule()  # a second replica: the same slot's job
    queue = evals._runner.queue
    assert [record.id for record in await queue.list(kind=SCHEDULE_KIND)] == [f"{SCHEDULE_KIND}-1767225600"]
    submitted = await evals.submit_due()
    assert [record.payload["set_id"] for record in submitted] == ["evalset_scheduled"]
    assert len(await queue.list(kind=RUN_KIND)) == 1
    now[0] += timedelta(minutes=5)
    assert await evals.store.delete_set("evalset_on_request") is True
    assert await evals.store.delete_set("evalset_on_request") is False


async def test_the_migration_makes_the_tables_the_models_describe(database: Database) -> None:
    async with database.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), EvalSetRow.metadata)
        )
    assert not [change for change in diff if "eval_" in str(change)]
