"""Stored chat completions in the store, on SQLite and on a real PostgreSQL: written in batches (a
retried batch adds nothing), read back only by their tenant, listed as OpenAI pages its lists,
filtered by model and metadata, updated and deleted."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.store import Database
from gateway.store.batched import BatchedWriter
from gateway.store.completions import CompletionStore, StoredCompletion, StoredCompletionRow
from gateway.store.owned import Owner, PageQuery
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 12, 5, 9, 0, 0)
ACME, OTHER = Owner("tn_acme", "key_a"), Owner("tn_other", "key_o")


@pytest.fixture(params=["sqlite", "postgresql"])
async def completions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CompletionStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"stored_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield CompletionStore(database)
    await database.close()


def row(number: int, owner: Owner = ACME, *, model: str = "m1", **metadata: str) -> StoredCompletionRow:
    return StoredCompletionRow(
        id=f"chatcmpl-{number}",
        model=model,
        created=1_700_000_000 + number,
        created_at=T0 + timedelta(seconds=number),
        request_id=f"req-{number}",
        tenant_id=owner.tenant_id,
        created_by=owner.key_id,
        end_user="user-7",
        metadata=dict(metadata),
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"hi {number}"}],
        choices=[{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        fields={"temperature": 0.5},
    )


async def test_the_migration_makes_the_table_the_model_describes(completions: CompletionStore) -> None:
    async with completions.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredCompletion.metadata)
        )
    ours = [change for change in diff if "stored_completions" in str(change)]
    assert ours == []


async def test_read_back_only_by_its_tenant(completions: CompletionStore) -> None:
    await completions.add([row(1, topic="a"), row(2, OTHER)])
    await completions.add([row(1, topic="a")])  # a retried batch: skipped, not an error
    found = await completions.get(ACME, "chatcmpl-1")
    assert found is not None and found.messages[1]["content"] == "hi 1"
    assert (found.created_by, found.end_user, found.metadata) == ("key_a", "user-7", {"topic": "a"})
    assert found.fields == {"temperature": 0.5} and found.usage is not None
    # A key of the same tenant sees it (the tenant owns it, as OpenAI's project does); another
    # tenant's key does not, whatever it tries.
    assert await completions.get(Owner("tn_acme", "key_b"), "chatcmpl-1") is not None
    assert await completions.get(OTHER, "chatcmpl-1") is None
    assert await completions.update_metadata(OTHER, "chatcmpl-1", {"x": "y"}) is None
    assert not await completions.delete(OTHER, "chatcmpl-1")
    assert [r.id for r in (await completions.list(OTHER, PageQuery())).rows] == ["chatcmpl-2"]
    # Auth off: the anonymous owner sees only what was stored without a tenant.
    assert (await completions.list(Owner(None), PageQuery())).rows == []


async def test_pages_filters_update_and_delete(completions: CompletionStore) -> None:
    await completions.add(
        [row(n, model="m2" if n % 3 == 0 else "m1", parity=str(n % 2)) for n in range(1, 11)]
    )
    first = await completions.list(ACME, PageQuery(limit=4))
    assert [r.id for r in first.rows] == [f"chatcmpl-{n}" for n in (1, 2, 3, 4)] and first.has_more
    assert first.rows[0].messages == []  # a list leaves the messages out
    rest = await completions.list(ACME, PageQuery(after="chatcmpl-8", limit=4))
    assert [r.id for r in rest.rows] == ["chatcmpl-9", "chatcmpl-10"] and not rest.has_more
    newest = await completions.list(ACME, PageQuery(order="desc", limit=2, after="chatcmpl-5"))
    assert [r.id for r in newest.rows] == ["chatcmpl-4", "chatcmpl-3"] and newest.has_more
    m2 = await completions.list(ACME, PageQuery(), model="m2")
    assert [r.id for r in m2.rows] == ["chatcmpl-3", "chatcmpl-6", "chatcmpl-9"]
    odd_m2 = await completions.list(ACME, PageQuery(), model="m2", metadata={"parity": "1"})
    assert [r.id for r in odd_m2.rows] == ["chatcmpl-3", "chatcmpl-9"]
    assert (await completions.list(ACME, PageQuery(after="chatcmpl-nope"))).rows == []

    updated = await completions.update_metadata(ACME, "chatcmpl-3", {"reviewed": "yes"})
    assert updated is not None and updated.metadata == {"reviewed": "yes"}
    assert [r.id for r in (await completions.list(ACME, PageQuery(), metadata={"reviewed": "yes"})).rows] == [
        "chatcmpl-3"
    ]
    assert await completions.delete(ACME, "chatcmpl-3")
    assert not await completions.delete(ACME, "chatcmpl-3")
    assert await completions.get(ACME, "chatcmpl-3") is None


async def test_the_writer_batches_off_the_request_path_and_keeps_rows_while_the_store_is_down(
    completions: CompletionStore,
) -> None:
    down = True

    async def write(rows: object) -> None:
        if down:
            raise ConnectionError("database down")
        await completions.add(rows)  # type: ignore[arg-type]

    writer: BatchedWriter[StoredCompletionRow] = BatchedWriter(
        write, name="test-writer", flush_interval_s=0.05, batch_size=100
    )
    writer.start()
    for number in range(1, 6):
        writer.record(row(number))  # never waits
    await asyncio.sleep(0.2)
    assert writer.pending == 5 and writer.failures >= 1
    down = False
    await writer.flush()
    assert writer.pending == 0 and writer.written == 5
    assert len((await completions.list(ACME, PageQuery())).rows) == 5
    await writer.close()


async def test_a_row_the_database_refuses_is_dropped_and_the_rest_written(
    completions: CompletionStore,
) -> None:
    if completions.db.is_sqlite:
        pytest.skip("SQLite does not enforce column lengths; PostgreSQL refuses the row")
    writer: BatchedWriter[StoredCompletionRow] = BatchedWriter(
        completions.add, name="test-writer", flush_interval_s=60, batch_size=100
    )
    too_long = dataclasses.replace(row(3), id="chatcmpl-" + "x" * 200)
    for item in (row(1), row(2), too_long, row(4)):
        writer.record(item)
    await writer.flush()
    assert (writer.written, writer.refused, writer.pending) == (3, 1, 0)
    listed = await completions.list(ACME, PageQuery())
    assert [r.id for r in listed.rows] == ["chatcmpl-1", "chatcmpl-2", "chatcmpl-4"]
