"""The ledger's time buckets (the usage API's one query) on SQLite and a real PostgreSQL: each
dialect computes a row's bucket its own way (strftime('%s') / extract(epoch)), so both must put the
same rows in the same buckets, grouped and filtered alike."""

from __future__ import annotations

import calendar
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.store import Database, Store, UsageRow
from gateway.store.usage_buckets import BucketQuery, UsageBuckets
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 11, 1)
START = calendar.timegm(T0.timetuple())


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"usage_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()


def _row(request_id: str, at: datetime, tenant: str, model: str, tokens: int, status: int = 200) -> UsageRow:
    return UsageRow(
        created_at=at,
        request_id=request_id,
        tenant_id=tenant,
        key_id=f"key_{tenant}",
        model=model,
        endpoint="/v1/chat/completions",
        stream=False,
        prompt_tokens=tokens,
        completion_tokens=1,
        cost_micros=tokens * 10,
        latency_ms=5,
        status=status,
        outcome="completed" if status < 400 else "rejected",
        served_model=model,
    )


async def test_the_same_buckets_on_each_dialect(database: Database) -> None:
    await Store(database).add_usage(
        [
            _row("r1", T0, "tn_a", "m1", 1),  # the first second of bucket 0
            _row("r2", T0 + timedelta(hours=1, seconds=-1), "tn_a", "m2", 2),  # its last second
            _row("r3", T0 + timedelta(hours=1), "tn_a", "m1", 4),  # bucket 1
            _row("batch_z-1", T0 + timedelta(hours=2, minutes=30), "tn_a", "m1", 8),  # bucket 2, a batch line
            _row("r5", T0 + timedelta(hours=2), "tn_b", "m1", 16),  # another tenant
            _row("r6", T0 + timedelta(hours=2), "tn_a", "m1", 32, status=429),  # refused: not counted
            _row("r7", T0 + timedelta(hours=3), "tn_a", "m1", 64),  # past the end
        ]
    )
    buckets = UsageBuckets(database)
    base = BucketQuery(endpoints=["/v1/chat/completions"], start=START, end=START + 3 * 3600, width_s=3600)
    rows = await buckets.rows(BucketQuery(**{**base.__dict__, "tenant_id": "tn_a", "group_by": ["model"]}))
    found = sorted((int(r["bucket"]), r["model"], int(r["input_tokens"]), int(r["requests"])) for r in rows)
    assert found == [(0, "m1", 1, 1), (0, "m2", 2, 1), (1, "m1", 4, 1), (2, "m1", 8, 1)]
    batch = await buckets.rows(BucketQuery(**{**base.__dict__, "group_by": ["batch", "project_id"]}))
    assert sorted((int(r["bucket"]), bool(r["batch"]), r["project_id"]) for r in batch) == [
        (0, False, "tn_a"),
        (1, False, "tn_a"),
        (2, False, "tn_b"),
        (2, True, "tn_a"),
    ]
    only_m2 = await buckets.rows(BucketQuery(**{**base.__dict__, "filters": {"model": ["m2"]}}))
    assert [(int(r["bucket"]), int(r["cost_micros"])) for r in only_m2] == [(0, 20)]
    daily = await buckets.rows(BucketQuery(endpoints=None, start=START, end=START + 86_400, width_s=86_400))
    assert [(int(r["bucket"]), int(r["input_tokens"])) for r in daily] == [(0, 1 + 2 + 4 + 8 + 16 + 64)]
