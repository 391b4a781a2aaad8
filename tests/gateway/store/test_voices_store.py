"""The custom-voice tables on SQLite: the migration (0026) makes what the models describe, reads are
scoped to the owner's tenant, and withdrawing a consent takes the voices made under it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.store import Database
from gateway.store.owned import Owner, PageQuery
from gateway.store.voices import StoredVoice, StoredVoiceConsent, VoiceStore

T0 = datetime(2026, 12, 6, 12, 0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[VoiceStore]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'voices.db'}")
    await database.migrate()
    yield VoiceStore(database)
    await database.close()


def _owned(tenant: str, object_id: str, minutes: int) -> dict[str, object]:
    return {
        "id": object_id,
        "tenant_id": tenant,
        "created_by": f"key_{tenant}",
        "end_user": None,
        "created_at": T0 + timedelta(minutes=minutes),
        "tags": {},
        "name": object_id,
        "language": "en-US",
        "blob_key": f"voice/{tenant}/{object_id}",
        "seconds": 3.0,
    }


async def test_the_migration_makes_the_tables_the_models_describe(store: VoiceStore) -> None:
    async with store.db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), StoredVoice.metadata)
        )
    assert [c for c in diff if "voice" in str(c)] == []


async def test_reads_are_the_tenants_and_a_withdrawn_consent_takes_its_voices(store: VoiceStore) -> None:
    a, b = Owner("tn_a"), Owner("tn_b")
    await store.add(StoredVoiceConsent(**_owned("tn_a", "cons_1", 0)))
    await store.add(StoredVoiceConsent(**_owned("tn_a", "cons_2", 1)))
    for minutes, voice in enumerate(("voice_1", "voice_2")):
        await store.add(StoredVoice(consent_id="cons_1", **_owned("tn_a", voice, minutes)))
    assert await store.get(StoredVoiceConsent, b, "cons_1") is None
    assert await store.voice("tn_b", "voice_1") is None
    assert (await store.voice("tn_a", "voice_1")) is not None
    page = await store.page(StoredVoiceConsent, a, PageQuery(limit=1, order="desc"))
    assert [row.id for row in page] == ["cons_2", "cons_1"]  # one more than the limit: has_more
    assert await store.page(StoredVoice, b, PageQuery()) == []
    assert await store.remove(StoredVoiceConsent, b, "cons_1") is None
    gone = await store.remove(StoredVoiceConsent, a, "cons_1")
    assert gone is not None and sorted(row.id for row in gone) == ["cons_1", "voice_1", "voice_2"]
    assert await store.page(StoredVoice, a, PageQuery()) == []
    assert [row.id for row in await store.page(StoredVoiceConsent, a, PageQuery())] == ["cons_2"]
