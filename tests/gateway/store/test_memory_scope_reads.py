"""What a memory search reads from SQL (SQLite, migrated): the scope's row numbers come from an index
alone (migration 0025: tenant, entity, expiry), and the knowledge graph's memories are read by id
within the scope, never the scope's other rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gateway.store import Database
from gateway.store.memories import Change, MemoryStore, Scope, StoredMemory
from gateway.store.owned import Owner

T0 = datetime(2026, 12, 6, 9, 0, 0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await database.migrate()
    yield MemoryStore(database)
    await database.close()


async def _add(
    store: MemoryStore, owner: Owner, scope: Scope, text_: str, expires: datetime | None = None
) -> str:
    memory_id = str(uuid.uuid4())
    change = Change("ADD", memory_id, str(uuid.uuid4()), text=text_, vector=b"\0" * 8, scope=scope,
                    expires_at=expires)  # fmt: skip
    await store.apply(owner, [change], at=T0)
    return memory_id


async def test_the_migration_makes_the_indexes_the_model_describes(store: MemoryStore) -> None:
    async with store.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredMemory.metadata)
        )
    assert not [change for change in diff if "memories" in str(change)]


@pytest.mark.parametrize("entity", ["user_id", "agent_id", "run_id"])
async def test_a_scopes_row_numbers_are_read_from_the_index_alone(store: MemoryStore, entity: str) -> None:
    query = (
        f"EXPLAIN QUERY PLAN SELECT seq FROM memories WHERE tenant_id = 't' AND {entity} = 'u' "
        "AND (expires_at IS NULL OR expires_at > '2026-12-06')"
    )
    async with store.db.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in await conn.execute(text(query)))
    assert "COVERING INDEX" in plan, plan


async def test_graph_memories_are_read_by_id_within_the_scope(store: MemoryStore) -> None:
    mine, other = Owner("t1"), Owner("t2")
    kept = await _add(store, mine, Scope(user_id="u"), "lives in Lisbon")
    expired = await _add(store, mine, Scope(user_id="u"), "lived in Porto", T0 + timedelta(hours=1))
    elsewhere = await _add(store, mine, Scope(user_id="someone"), "lives in Oslo")
    foreign = await _add(store, other, Scope(user_id="u"), "lives in Rome")
    asked = [kept, expired, elsewhere, foreign, "no-such-id"]

    found = await store.named_in_scope(mine, Scope(user_id="u"), asked, live_at=T0 + timedelta(hours=2))
    assert set(found) == {kept} and found[kept].memory == "lives in Lisbon"
    found = await store.named_in_scope(mine, Scope(user_id="u"), asked, live_at=T0)
    assert set(found) == {kept, expired}  # not yet expired then
    assert await store.named_in_scope(mine, Scope(user_id="u"), [], live_at=T0) == {}
    # Metadata in the scope is matched as a search's is.
    assert await store.named_in_scope(mine, Scope(user_id="u", metadata={"k": "v"}), asked, live_at=T0) == {}
