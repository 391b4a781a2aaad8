"""Memory recalls' table (migration 0022) on SQLite and on a real PostgreSQL: the migration makes
what the model describes; a recall is read back by request id and by end user in its own tenant
only. And the panel's embedding map (PCA) on known vectors."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.routes.panel_memory import MAP_H, MAP_W, embedding_map
from gateway.store import Database
from gateway.store.memories import Memory, Scope
from gateway.store.memory_recalls import Recalled, RecallStore, StoredRecall
from gateway.store.owned import Owner
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 12, 6, 9, 0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
async def recalls(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecallStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"recalls_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield RecallStore(database)
    await database.close()


async def test_the_migration_makes_the_table_the_model_describes(recalls: RecallStore) -> None:
    async with recalls.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredRecall.metadata)
        )
    assert not [change for change in diff if "memory_recalls" in str(change)]


async def test_a_recall_is_read_in_its_own_tenant_only(recalls: RecallStore) -> None:
    found = [{"id": "m1", "score": 0.8, "placed": True}, {"id": "m2", "score": 0.3, "placed": False}]
    for n, (tenant, user) in enumerate([("t1", "alice"), ("t1", "alice"), ("t2", "alice")]):
        recall = Recalled(f"req-{n}", user, found, f"- fact {n}", 4)
        await recalls.record(Owner(tenant, "k"), recall, record_id=f"mrec_{n}", at=T0 + timedelta(seconds=n))
    got = await recalls.of_request(Owner("t1"), "req-0")
    assert got is not None and got.found == found and got.prompt == "- fact 0" and got.key_id == "k"
    assert await recalls.of_request(Owner("t2"), "req-0") is None
    assert [r.request_id for r in await recalls.of_user(Owner("t1"), "alice")] == ["req-1", "req-0"]
    assert [r.request_id for r in await recalls.of_user(Owner("t2"), "alice")] == ["req-2"]


def _memory(n: int, vector: list[float]) -> Memory:
    return Memory(
        seq=n,
        id=f"m{n}",
        memory=f"memory number {n}",
        hash="h",
        scope=Scope(user_id="u"),
        metadata={},
        categories=[],
        created_at=T0,
        updated_at=T0,
        vector=np.asarray(vector, dtype=np.float32).tobytes(),
    )


def test_the_map_keeps_near_memories_near() -> None:
    memories = [
        _memory(1, [1.0, 0.0, 0.0]),
        _memory(2, [0.98, 0.05, 0.0]),
        _memory(3, [0.0, 0.0, 1.0]),
        _memory(4, [1.0, 0.0]),  # another dimension: left off
    ]
    points, variance = embedding_map(memories)
    assert [p["id"] for p in points] == ["m1", "m2", "m3"]
    assert all(0 <= p["x"] <= MAP_W and 0 <= p["y"] <= MAP_H for p in points)
    near = np.hypot(points[0]["x"] - points[1]["x"], points[0]["y"] - points[1]["y"])
    far = np.hypot(points[0]["x"] - points[2]["x"], points[0]["y"] - points[2]["y"])
    assert near < far / 5 and variance[0] > 0.9
    one, _ = embedding_map(memories[:1])
    assert (one[0]["x"], one[0]["y"]) == (MAP_W / 2, MAP_H / 2)  # a single memory in the middle
    assert embedding_map([]) == ([], (0.0, 0.0))
