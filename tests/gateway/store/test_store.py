"""The store on SQLite and on a real PostgreSQL: migrations, tenants and keys, the ledger, the audit log."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from gateway.store import AlreadyExists, AuditContext, Database, Limits, NotFoundInStore, Store, UsageRow
from gateway.store.database import alembic_config
from tests.services import PostgresServer

_names = itertools.count()
AUDIT = AuditContext(actor="test", request_id="req-1", client_ip="127.0.0.1")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"store_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield Store(database)
    await database.close()


async def test_migrations_reach_head_and_go_back(store: Store) -> None:
    async with store.db.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert {"tenants", "api_keys", "usage", "audit_log", "alembic_version"} <= tables

        def downgrade_and_upgrade(sync: object) -> None:
            config = alembic_config(sync)  # type: ignore[arg-type]
            command.downgrade(config, "base")
            command.upgrade(config, "head")

        await conn.run_sync(downgrade_and_upgrade)
        await conn.commit()
    await store.db.migrate()  # at head already: nothing to do
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    async with store.db.engine.connect() as conn:
        version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == head


async def test_tenants_and_keys(store: Store) -> None:
    tenant = await store.create_tenant("acme", Limits(rpm=10, allowed_models=("m1",)), audit=AUDIT)
    with pytest.raises(AlreadyExists):
        await store.create_tenant("acme", Limits(), audit=AUDIT)
    key = await store.create_key(
        tenant.id,
        name="ci",
        key_hash="a" * 64,
        redacted="sk-a...aaaa",
        limits=Limits(tpm=500),
        expires_at=None,
        audit=AUDIT,
    )
    found = await store.find_key("a" * 64)
    assert found is not None
    assert (found.key_id, found.tenant_id, found.tenant_name) == (key.id, tenant.id, "acme")
    assert found.key_limits.tpm == 500 and found.tenant_limits.rpm == 10
    assert found.tenant_limits.allowed_models == ("m1",)
    assert await store.find_key("b" * 64) is None
    with pytest.raises(NotFoundInStore):
        await store.create_key(
            "tn_nope", name="", key_hash="c" * 64, redacted="", limits=Limits(), expires_at=None, audit=AUDIT
        )

    updated = await store.update_tenant(tenant.id, {"rpm": None, "disabled": True}, audit=AUDIT)
    assert updated.rpm is None and updated.disabled
    assert [k.id for k in await store.list_keys(tenant.id)] == [key.id]


async def test_rotation_grace_and_revocation(store: Store) -> None:
    tenant = await store.create_tenant("rot", Limits(), audit=AUDIT)
    key = await store.create_key(
        tenant.id, name="", key_hash="1" * 64, redacted="x", limits=Limits(), expires_at=None, audit=AUDIT
    )
    await store.rotate_key(key.id, key_hash="2" * 64, redacted="y", grace=timedelta(minutes=5), audit=AUDIT)
    old, new = await store.find_key("1" * 64), await store.find_key("2" * 64)
    assert old is not None and new is not None
    assert old.superseded_until is not None and new.superseded_until is None
    await store.rotate_key(key.id, key_hash="3" * 64, redacted="z", grace=timedelta(0), audit=AUDIT)
    assert await store.find_key("2" * 64) is None
    await store.revoke_key(key.id, audit=AUDIT)
    revoked = await store.find_key("3" * 64)
    assert revoked is not None and revoked.revoked_at is not None
    with pytest.raises(AlreadyExists):
        await store.revoke_key(key.id, audit=AUDIT)
    actions = [event.action for event in await store.list_audit(target_id=key.id)]
    assert actions == ["key.revoke", "key.rotate", "key.rotate", "key.create"]
    event = (await store.list_audit(target_id=key.id))[0]
    assert (event.actor, event.request_id, event.client_ip) == ("test", "req-1", "127.0.0.1")


def row(
    day: int, hour: int, tenant: str, key: str, model: str, prompt: int, completion: int, **kw: object
) -> UsageRow:
    values: dict[str, object] = {
        "created_at": datetime(2026, 5, day, hour, 30),
        "request_id": f"r{day}{hour}{key}",
        "tenant_id": tenant,
        "key_id": key,
        "model": model,
        "endpoint": "/v1/chat/completions",
        "stream": False,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_micros": prompt + 2 * completion,
        "latency_ms": 100,
        "status": 200,
        "outcome": "completed",
        **kw,
    }
    return UsageRow(**values)  # type: ignore[arg-type]


async def test_usage_report(store: Store) -> None:
    await store.add_usage(
        [
            row(1, 0, "t1", "k1", "m1", 10, 5),
            row(1, 23, "t1", "k1", "m1", 20, 5),
            row(1, 12, "t1", "k2", "m2", 1, 1),
            row(2, 0, "t2", "k3", "m1", 100, 50, status=429, outcome="rejected"),
        ]
    )
    by_day = await store.usage_report(group_by=["day"])
    assert [(r["day"], r["requests"], r["total_tokens"]) for r in by_day] == [
        ("2026-05-01", 3, 42),
        ("2026-05-02", 1, 150),
    ]
    everything = await store.usage_report(group_by=["tenant", "key", "model", "day"])
    assert [(r["tenant_id"], r["key_id"], r["model"], r["requests"]) for r in everything] == [
        ("t1", "k1", "m1", 2),
        ("t1", "k2", "m2", 1),
        ("t2", "k3", "m1", 1),
    ]
    first = everything[0]
    assert (first["prompt_tokens"], first["completion_tokens"], first["cost_usd"]) == (30, 10, 50 / 1e6)
    assert everything[2]["errors"] == 1
    window = await store.usage_report(
        group_by=["model"], start=datetime(2026, 5, 1, 12), end=datetime(2026, 5, 2)
    )
    assert [(r["model"], r["requests"]) for r in window] == [("m1", 1), ("m2", 1)]
    assert (await store.usage_report(group_by=[], tenant_id="t2"))[0]["requests"] == 1
    assert await store.usage_since(tenant_id="t1", since=datetime(2026, 5, 1, 12)) == (27, 30 + 3)
    assert await store.usage_since(key_id="k3", since=datetime(2026, 5, 3)) == (0, 0)


async def test_audio_seconds_limit_and_media_in_the_ledger(store: Store) -> None:
    tenant = await store.create_tenant("audio", Limits(audio_spm=600), audit=AUDIT)
    await store.create_key(
        tenant.id,
        name="",
        key_hash="d" * 64,
        redacted="x",
        limits=Limits(audio_spm=30),
        expires_at=None,
        audit=AUDIT,
    )
    found = await store.find_key("d" * 64)
    assert found is not None
    assert (found.key_limits.audio_spm, found.tenant_limits.audio_spm) == (30, 600)
    updated = await store.update_tenant(tenant.id, {"audio_spm": None}, audit=AUDIT)
    assert updated.audio_spm is None

    media = {"images": 1, "audios": 1, "audio_seconds": 2.0, "derived": ["ocr", "transcription"]}
    await store.add_usage(
        [
            row(3, 1, "ta", "ka", "whisper-1", 0, 0, endpoint="/v1/audio/transcriptions", audio_seconds=1.5),
            row(3, 2, "ta", "ka", "m1", 10, 5, audio_seconds=2.0, media=media),
            row(3, 3, "ta", "ka", "m1", 10, 5),
        ]
    )
    rows = await store.usage_rows(key_id="ka")
    assert [(r.audio_seconds, r.media) for r in rows] == [(1.5, None), (2.0, media), (None, None)]
    report = await store.usage_report(group_by=["model"], key_id="ka")
    assert [(r["model"], r["audio_seconds"], r["media_requests"]) for r in report] == [
        ("m1", 2.0, 1),
        ("whisper-1", 1.5, 0),
    ]
