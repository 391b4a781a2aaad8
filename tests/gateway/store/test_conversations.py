"""Conversations in the store, on SQLite and on a real PostgreSQL: created with their first items in
one transaction, read back only by their tenant, items paged in both orders, appends all-or-nothing
(a duplicate id adds nothing), concurrent appends kept whole and in order, deletes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from gateway.protocol.conversations import new_id, normalize_items
from gateway.store import Database
from gateway.store.conversations import (
    ConversationNotFound,
    ConversationStore,
    DuplicateItem,
    StoredConversation,
    StoredItem,
)
from gateway.store.owned import Owner
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 12, 5, 9, 0, 0)
ACME, OTHER = Owner("tn_acme", "key_a"), Owner("tn_other", "key_o")


@pytest.fixture(params=["sqlite", "postgresql"])
async def conversations(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"conversations_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield ConversationStore(database)
    await database.close()


def says(*texts: str) -> list[dict[str, object]]:
    return normalize_items([{"role": "user", "content": text} for text in texts])


def texts(items: list[dict[str, object]]) -> list[str]:
    return [item["content"][0]["text"] for item in items]  # type: ignore[index]


async def test_the_migration_makes_the_tables_the_models_describe(conversations: ConversationStore) -> None:
    async with conversations.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredConversation.metadata)
        )
    ours = [change for change in diff if "conversation" in str(change)]
    assert ours == []


async def test_created_with_items_and_read_back_only_by_its_tenant(conversations: ConversationStore) -> None:
    conv = new_id("conv_")
    made = await conversations.create(
        ACME, conv, at=T0, metadata={"topic": "a"}, items=says("one", "two"), end_user="alice"
    )
    assert (made.id, made.metadata, made.created_by, made.end_user) == (
        conv,
        {"topic": "a"},
        "key_a",
        "alice",
    )
    # Any key of the tenant reads it; another tenant's finds nothing, whatever it tries.
    same_tenant = Owner("tn_acme", "key_b")
    assert (await conversations.get(same_tenant, conv)).id == conv
    assert texts((await conversations.items(same_tenant, conv)).items) == ["one", "two"]
    for attempt in (
        conversations.get(OTHER, conv),
        conversations.items(OTHER, conv),
        conversations.item(OTHER, conv, "msg_x"),
        conversations.update_metadata(OTHER, conv, {"x": "y"}),
        conversations.append(OTHER, conv, says("stolen"), at=T0),
        conversations.delete_item(OTHER, conv, "msg_x"),
        conversations.delete(OTHER, conv),
    ):
        with pytest.raises(ConversationNotFound):
            await attempt
    assert len((await conversations.items(ACME, conv)).items) == 2
    # Auth off: the anonymous owner sees only what was made without a tenant.
    with pytest.raises(ConversationNotFound):
        await conversations.get(Owner(None), conv)
    # Every item row carries the tenant, the key that added it and the end user (for erasure).
    await conversations.append(same_tenant, conv, says("three"), at=T0)
    async with conversations.db.session() as session:
        rows = (await session.execute(select(StoredItem).order_by(StoredItem.position))).scalars().all()
    owners = [(r.position, r.tenant_id, r.created_by, r.end_user) for r in rows]
    assert owners == [
        (0, "tn_acme", "key_a", "alice"),
        (1, "tn_acme", "key_a", "alice"),
        (2, "tn_acme", "key_b", "alice"),
    ]


async def test_items_page_in_both_orders(conversations: ConversationStore) -> None:
    conv = new_id("conv_")
    await conversations.create(ACME, conv, at=T0, metadata={}, items=says(*[f"m{n}" for n in range(5)]))
    await conversations.append(ACME, conv, says(*[f"m{n}" for n in range(5, 9)]), at=T0)
    everything = (await conversations.items(ACME, conv)).items
    assert texts(everything) == [f"m{n}" for n in range(9)]
    ids = [item["id"] for item in everything]
    for order in ("asc", "desc"):
        seen: list[str] = []
        after = None
        while True:
            page = await conversations.items(ACME, conv, after=after, limit=4, order=order)
            seen += [item["id"] for item in page.items]
            if not page.has_more:
                break
            after = seen[-1]
        assert seen == (ids if order == "asc" else ids[::-1])
    assert (await conversations.items(ACME, conv, after="msg_nope", limit=4)).items == []
    assert await conversations.item(ACME, conv, ids[3]) == everything[3]
    assert await conversations.item(ACME, conv, "msg_nope") is None


async def test_an_append_is_all_or_nothing(conversations: ConversationStore) -> None:
    conv = new_id("conv_")
    first = says("kept")
    await conversations.create(ACME, conv, at=T0, metadata={}, items=first)
    clash = [*says("new one"), {**says("again")[0], "id": first[0]["id"]}]
    with pytest.raises(DuplicateItem) as caught:
        await conversations.append(ACME, conv, clash, at=T0)
    assert (caught.value.index, caught.value.item_id) == (1, first[0]["id"])
    assert texts((await conversations.items(ACME, conv)).items) == ["kept"]
    # The same item id may live in two conversations (an item copied from one to another).
    other = new_id("conv_")
    await conversations.create(ACME, other, at=T0, metadata={}, items=first)
    assert len((await conversations.items(ACME, other)).items) == 1


async def test_concurrent_appends_keep_every_item_in_one_order(conversations: ConversationStore) -> None:
    conv = new_id("conv_")
    await conversations.create(ACME, conv, at=T0, metadata={})
    batches = [says(f"{writer}-0", f"{writer}-1", f"{writer}-2") for writer in range(8)]
    await asyncio.gather(*(conversations.append(ACME, conv, batch, at=T0) for batch in batches))
    seen = texts((await conversations.items(ACME, conv)).items)
    assert sorted(seen) == sorted(f"{w}-{n}" for w in range(8) for n in range(3))
    for writer in range(8):  # each append's items stay together, in their order
        start = seen.index(f"{writer}-0")
        assert seen[start : start + 3] == [f"{writer}-0", f"{writer}-1", f"{writer}-2"]


async def test_update_delete_item_and_delete(conversations: ConversationStore) -> None:
    conv = new_id("conv_")
    items = says("a", "b", "c")
    await conversations.create(ACME, conv, at=T0, metadata={"v": "1"}, items=items)
    assert (await conversations.update_metadata(ACME, conv, {"v": "2"})).metadata == {"v": "2"}
    assert (await conversations.get(ACME, conv)).metadata == {"v": "2"}
    shown = await conversations.delete_item(ACME, conv, items[1]["id"])  # type: ignore[arg-type]
    assert shown is not None and shown.id == conv
    assert await conversations.delete_item(ACME, conv, items[1]["id"]) is None  # type: ignore[arg-type]
    assert texts((await conversations.items(ACME, conv)).items) == ["a", "c"]
    await conversations.append(ACME, conv, says("d"), at=T0)
    assert texts((await conversations.items(ACME, conv)).items) == ["a", "c", "d"]
    await conversations.delete(ACME, conv)
    with pytest.raises(ConversationNotFound):
        await conversations.get(ACME, conv)
    async with conversations.db.session() as session:
        left = await session.execute(select(func.count()).select_from(StoredItem))
    assert left.scalar_one() == 0
