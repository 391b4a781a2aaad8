"""Stored responses in the store, on SQLite and on a real PostgreSQL: the migration makes the tables
the models describe, a response is read only by its tenant, a cancel that came first wins over the
job's end, and a background response's events are read back in order after a sequence number."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.store import Database
from gateway.store.owned import Owner
from gateway.store.responses import ResponseRow, ResponseStore, StoredResponse
from tests.services import PostgresServer

_names = itertools.count()
ACME, OTHER = Owner("tn_acme", "key_a"), Owner("tn_other", "key_o")


@pytest.fixture(params=["sqlite", "postgresql"])
async def responses(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResponseStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"responses_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield ResponseStore(database)
    await database.close()


def row(number: int, owner: Owner = ACME, *, status: str = "completed") -> ResponseRow:
    return ResponseRow(
        id=f"resp_{number}",
        tenant_id=owner.tenant_id,
        created_by=owner.key_id,
        end_user="user-7",
        created_at=datetime(2026, 12, 5, 9, 0, number),
        metadata={"n": str(number)},
        model="m1",
        status=status,
        background=status != "completed",
        previous_response_id=None,
        job_id=None,
        input_items=[{"id": "msg_1", "type": "message", "role": "user", "content": []}],
        body={"id": f"resp_{number}", "object": "response", "status": status, "output": []},
    )


async def test_the_migration_makes_the_tables_the_models_describe(responses: ResponseStore) -> None:
    async with responses.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredResponse.metadata)
        )
    assert [change for change in diff if "response" in str(change)] == []


async def test_read_and_deleted_only_by_its_tenant(responses: ResponseStore) -> None:
    await responses.add(row(1))
    found = await responses.get(Owner("tn_acme", "key_b"), "resp_1")
    assert found is not None and found.input_items[0]["id"] == "msg_1" and found.end_user == "user-7"
    assert await responses.get(OTHER, "resp_1") is None
    assert not await responses.delete(OTHER, "resp_1")
    assert await responses.delete(ACME, "resp_1")
    assert await responses.get(ACME, "resp_1") is None


async def test_a_cancel_that_came_first_wins_and_events_read_in_order(responses: ResponseStore) -> None:
    await responses.add(row(2, status="in_progress"))
    assert await responses.mark("resp_2", "cancelled", {"status": "cancelled"})
    async with responses.db.session() as session:
        assert not await responses.finish(session, "resp_2", "completed", {"status": "completed"})
        responses.add_events(session, "resp_2", [{"type": f"e{n}", "sequence_number": n} for n in range(5)])
        await session.commit()
    assert await responses.status("resp_2") == "cancelled"
    assert [e["sequence_number"] for e in await responses.events_after("resp_2", 2)] == [3, 4]
    assert await responses.events_after("resp_2", 4) == []
