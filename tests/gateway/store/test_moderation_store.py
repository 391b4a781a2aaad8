"""Moderation's tables (migration 0013), on SQLite and on a real PostgreSQL: the migration makes
what the models describe; a tenant's policy set, replaced and removed, each change audited with
its actor; flags kept with tenant, key and end user, listed newest first by tenant or user."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.store import AuditContext, Database, Store
from gateway.store.moderation import Flag, ModerationStore, StoredFlag
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 12, 5, 9, 0, 0)
AUDIT = AuditContext(actor="admin:alice", request_id="req-1", client_ip="10.0.0.7")


@pytest.fixture(params=["sqlite", "postgresql"])
async def moderation(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ModerationStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"moderation_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield ModerationStore(database)
    await database.close()


def _flag(number: int, tenant: str, user: str | None, at: datetime) -> Flag:
    return Flag(
        id=f"modflag_{number}",
        tenant_id=tenant,
        created_by=f"key_{tenant}",
        end_user=user,
        created_at=at,
        request_id=f"req-{number}",
        endpoint="/v1/chat/completions",
        model="tantra-tiny",
        stage="input",
        action="blocked",
        categories=["harassment"],
        scores={"harassment": 0.97},
        excerpt="you idiot",
    )


async def test_the_migration_makes_the_tables_the_models_describe(moderation: ModerationStore) -> None:
    async with moderation.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredFlag.metadata)
        )
    assert [change for change in diff if "moderation" in str(change)] == []


async def test_policies_are_set_replaced_removed_and_audited(moderation: ModerationStore) -> None:
    assert await moderation.policy("tn_a") is None
    await moderation.set_policy("tn_a", {"input": "block"}, at=T0, audit=AUDIT)
    await moderation.set_policy("tn_a", {"input": "flag", "output": "block"}, at=T0, audit=AUDIT)
    assert await moderation.policy("tn_a") == {"input": "flag", "output": "block"}
    assert await moderation.policy("tn_b") is None
    await moderation.set_policy("tn_a", None, at=T0, audit=AUDIT)
    assert await moderation.policy("tn_a") is None
    events = await Store(moderation.db).list_audit(limit=10, target_id="tn_a")
    assert [event.action for event in events] == [
        "moderation_policy.delete",
        "moderation_policy.set",
        "moderation_policy.set",
    ]
    assert {event.actor for event in events} == {"admin:alice"}
    assert {event.client_ip for event in events} == {"10.0.0.7"}


async def test_flags_listed_newest_first_by_tenant_and_user(moderation: ModerationStore) -> None:
    for number, (tenant, user) in enumerate([("tn_a", "u1"), ("tn_a", "u2"), ("tn_b", "u1")]):
        await moderation.add_flag(_flag(number, tenant, user, T0 + timedelta(seconds=number)))
    ours = await moderation.flags(tenant_id="tn_a")
    assert [flag.id for flag in ours] == ["modflag_1", "modflag_0"]
    assert ours[0].view()["user"] == "u2" and ours[0].view()["key_id"] == "key_tn_a"
    assert ours[0].scores == {"harassment": 0.97} and ours[0].categories == ["harassment"]
    assert [flag.id for flag in await moderation.flags(end_user="u1")] == ["modflag_2", "modflag_0"]
    assert len(await moderation.flags(limit=1)) == 1
