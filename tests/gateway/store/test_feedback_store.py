"""The feedback table on SQLite and PostgreSQL: the migration makes what the model describes, reads
are scoped to the owner's tenant, and pages, filters and the export's read follow the rows' order."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.store import Database
from gateway.store.feedback import FeedbackFilter, FeedbackStore, StoredFeedback
from gateway.store.owned import Owner, PageQuery
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 12, 5, 9, 0, 0)
ACME, OTHER = Owner("tn_acme", "key_a"), Owner("tn_other", "key_o")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FeedbackStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"feedback_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield FeedbackStore(database)
    await database.close()


def row(owner: Owner, n: int, **fields: object) -> StoredFeedback:
    values: dict[str, object] = {
        "id": f"feedback_{owner.tenant_id}_{n}",
        "tenant_id": owner.tenant_id,
        "created_by": owner.key_id,
        "end_user": "alice",
        "created_at": T0 + timedelta(seconds=n),
        "tags": {},
        "target_type": "chat.completion",
        "target_id": f"chatcmpl-{n}",
        "rating": "up",
        "score": 1.0,
        "prompt": [{"role": "user", "content": "hi"}],
        "answer": {"role": "assistant", "content": "hello"},
        "prompt_hash": "h",
        **fields,
    }
    return StoredFeedback(**values)


async def test_the_migration_makes_the_table_the_model_describes(store: FeedbackStore) -> None:
    async with store.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredFeedback.metadata)
        )
    ours = [
        c
        for c in diff
        if "feedback" in str(c) or "fine_tuning_jobs" in str(c) or "fine_tuning_models" in str(c)
    ]
    assert ours == []


async def test_scoped_paged_filtered_and_exported_in_order(store: FeedbackStore) -> None:
    for n in range(5):
        await store.add(row(ACME, n, rating="up" if n % 2 else "down", label="tone" if n < 2 else None))
    await store.add(row(OTHER, 0))
    assert (await store.get(ACME, "feedback_tn_acme_1")) is not None
    # Another tenant's id is simply not there, to read or to delete.
    assert await store.get(OTHER, "feedback_tn_acme_1") is None
    assert not await store.delete(OTHER, "feedback_tn_acme_1")
    first, more = await store.page(ACME, PageQuery(limit=2, order="desc"))
    assert [r.id for r in first] == ["feedback_tn_acme_4", "feedback_tn_acme_3"] and more
    rest, more = await store.page(ACME, PageQuery(after=first[-1].id, limit=5, order="desc"))
    assert [r.id for r in rest] == ["feedback_tn_acme_2", "feedback_tn_acme_1", "feedback_tn_acme_0"]
    assert not more
    # `after` naming another tenant's feedback: nothing comes after it.
    assert await store.page(ACME, PageQuery(after="feedback_tn_other_0")) == ([], False)
    ups, _ = await store.page(ACME, PageQuery(), FeedbackFilter(rating="up"))
    assert [r.id for r in ups] == ["feedback_tn_acme_1", "feedback_tn_acme_3"]
    labelled = await store.for_export(ACME, FeedbackFilter(label="tone"), limit=10)
    assert [r.id for r in labelled] == ["feedback_tn_acme_0", "feedback_tn_acme_1"]
    since = await store.for_export(ACME, FeedbackFilter(created_after=T0 + timedelta(seconds=3)), limit=10)
    assert [r.id for r in since] == ["feedback_tn_acme_3", "feedback_tn_acme_4"]
    # The admin's listing: every tenant's, or one's.
    everyone, _ = await store.page(None, PageQuery(limit=100))
    assert {r.tenant_id for r in everyone} >= {"tn_acme", "tn_other"}
    theirs, _ = await store.page(None, PageQuery(), FeedbackFilter(tenant_id="tn_other"))
    assert [r.id for r in theirs] == ["feedback_tn_other_0"]
    assert await store.delete(ACME, "feedback_tn_acme_1")
    assert await store.get(ACME, "feedback_tn_acme_1") is None
