"""Retention on a real SQLite file and a real PostgreSQL, with real blobs on disk: objects of every
kind for two tenants, a clock moved forward, then the sweep. Expired objects are gone from SQL (their
children too) and from the blob store, recent ones and everything of the tenant without a policy
remain, a tenant's `0` keeps forever against the operator's default, files past their own
`expires_at` go, running batches and fine-tuning jobs are spared; then the same through the job
runner, whose run schedules the next slot."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import func, select, update

from gateway.blobs import LocalBlobStore
from gateway.jobs import JobOptions, JobQueue, JobRunner, RunnerPolicy
from gateway.memory import FaissIndex
from gateway.memory.index import Vector, from_bytes
from gateway.services.adapters import ADAPTER_FILES
from gateway.services.retention import Retention
from gateway.settings.fields_retention import RETENTION_KINDS
from gateway.settings.schema import Settings
from gateway.store import AuditContext, Database, utcnow
from gateway.store.batches import Batch, BatchLine
from gateway.store.completions import StoredCompletion
from gateway.store.conversations import StoredConversation, StoredItem
from gateway.store.evals import EvalRunRow
from gateway.store.file_models import StoredFile
from gateway.store.fine_tuning import FineTuningEventRow, FineTuningJobRow
from gateway.store.job_rows import JobRow
from gateway.store.memories import MemoryStore, StoredMemory, StoredMemoryEvent
from gateway.store.memory_recalls import StoredRecall
from gateway.store.models import AuditEvent, UsageRecord
from gateway.store.moderation import StoredFlag
from gateway.store.responses import ResponseEvent, StoredResponse
from gateway.store.retention import _TARGETS, RetentionPolicy, RetentionStore
from gateway.store.voices import StoredVoice
from tests.gateway.jobs.handlers import finished
from tests.services import PostgresServer

_names = itertools.count()
T0 = datetime(2026, 10, 1, 12, 0)
AUDIT = AuditContext(actor="admin:ops", request_id="req-r", client_ip="10.0.0.9")
ALL_30 = dict.fromkeys(RETENTION_KINDS, 30)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"retention_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
async def blobs(tmp_path: Path) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    return store


class Vectors:
    """Records what the sweep asks the vector index to forget (the index itself: tests/gateway/memory)."""

    def __init__(self) -> None:
        self.removed: dict[str | None, set[int]] = {}

    async def remove(self, tenant_id: str | None, seqs: Collection[int]) -> None:
        self.removed.setdefault(tenant_id, set()).update(seqs)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def seed(
    database: Database, blobs: LocalBlobStore, tenant: str, tag: str, at: datetime, **extra: Any
) -> None:
    """One object of every kind (with its children and blobs) for `tenant`, made at `at`."""
    name = f"{tenant}_{tag}"
    owned = {"tenant_id": tenant, "created_by": f"key_{tenant}", "end_user": "u1", "created_at": at}
    await blobs.put(f"files/{name}", _chunks(b"data"))
    await blobs.put(f"voice/{name}", _chunks(b"clip"))
    for file in ADAPTER_FILES:
        await blobs.put(f"adapters/{name}/{file}", _chunks(b"lora"))
    async with database.session() as session:
        session.add(
            UsageRecord(
                created_at=at,
                request_id=f"req_{name}",
                tenant_id=tenant,
                key_id=f"key_{tenant}",
                model="m",
                endpoint="/v1/chat/completions",
                stream=False,
                prompt_tokens=1,
                completion_tokens=1,
                cost_micros=1,
                latency_ms=1,
                status=200,
                outcome="completed",
            )
        )
        session.add(
            StoredResponse(id=f"resp_{name}", model="m", status="completed", input_items=[], body={}, **owned)
        )
        session.add(ResponseEvent(response_id=f"resp_{name}", sequence=0, event={}))
        session.add(
            StoredCompletion(
                id=f"chatcmpl_{name}",
                model="m",
                created=1,
                request_id=f"req_{name}",
                messages=[],
                choices=[],
                **owned,
            )
        )
        conversation = StoredConversation(id=f"conv_{name}", **owned)
        session.add(conversation)
        await session.flush()
        session.add(
            StoredItem(
                conversation_seq=conversation.seq,
                position=0,
                item_id=f"msg_{name}",
                type="message",
                created_at=at,
                body={},
                tenant_id=tenant,
            )
        )
        session.add(
            StoredFile(
                id=f"file_{name}",
                filename="a.jsonl",
                purpose="batch",
                blob_key=f"files/{name}",
                status="processed",
                bytes=4,
                expires_at=extra.get("file_expires_at"),
                tenant_id=tenant,
                created_at=at,
            )
        )
        session.add(
            Batch(
                id=f"batch_{name}",
                endpoint="/v1/chat/completions",
                input_file_id="file_x",
                completion_window="24h",
                status=extra.get("batch_status", "completed"),
                expires_at=at + timedelta(days=1),
                **owned,
            )
        )
        session.add(BatchLine(batch_id=f"batch_{name}", line=1, ok=True, text="{}"))
        session.add(
            StoredMemory(
                id=f"mem_{name}", memory="likes tea", hash=name, updated_at=at, vector=b"\0" * 8, **owned
            )
        )
        session.add(
            StoredMemoryEvent(
                id=f"memevt_{name}", memory_id=f"mem_{name}", event="ADD", created_at=at, tenant_id=tenant
            )
        )
        session.add(
            StoredRecall(
                id=f"mrec_{name}",
                request_id=f"req_{name}",
                tenant_id=tenant,
                end_user="u1",
                created_at=at,
                found=[],
                prompt="",
                tokens=0,
            )
        )
        session.add(
            StoredFlag(
                id=f"modflag_{name}",
                endpoint="/v1/moderations",
                stage="request",
                action="flagged",
                categories=[],
                scores={},
                tenant_id=tenant,
                created_at=at,
            )
        )
        session.add(
            FineTuningJobRow(
                id=f"ftjob_{name}",
                model="m",
                training_file="file_x",
                seed=1,
                method={},
                status=extra.get("fine_tuning_status", "succeeded"),
                adapter_key=f"adapters/{name}/",
                **owned,
            )
        )
        session.add(
            FineTuningEventRow(
                id=f"ftevent_{name}",
                job_id=f"ftjob_{name}",
                created_at=at,
                level="info",
                type="message",
                message="m",
            )
        )
        session.add(
            EvalRunRow(
                id=f"evalrun_{name}",
                set_id=f"evalset_{name}",
                tenant_id=tenant,
                model="m",
                version="v1",
                score=1.0,
                passed=1,
                total=1,
                results=[],
                regression=False,
                created_at=at,
            )
        )
        session.add(
            StoredVoice(
                id=f"voice_{name}",
                name=name,
                consent_id=f"cons_{name}",
                language="en",
                blob_key=f"voice/{name}",
                seconds=3.0,
                tags={},
                **owned,
            )
        )
        await session.commit()


async def ids(database: Database, kind: str) -> set[str]:
    """The ids (request ids for the ledger) of `kind`'s rows left."""
    table = _TARGETS[kind][0]
    column = table.request_id if kind == "ledger" else table.id
    async with database.session() as session:
        return set((await session.scalars(select(column))).all())


async def children(database: Database) -> dict[str, int]:
    counts = {}
    async with database.session() as session:
        for table in (ResponseEvent, StoredItem, BatchLine, StoredMemoryEvent, FineTuningEventRow):
            counts[table.__tablename__] = int(
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
    return counts


def blob_exists(blobs: LocalBlobStore, key: str) -> bool:
    return (blobs.root / key).exists()


async def test_the_migration_makes_the_table_the_model_describes(database: Database) -> None:
    async with database.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), RetentionPolicy.metadata)
        )
    assert not [change for change in diff if "retention_policies" in str(change)]


async def test_a_clock_moved_forward(database: Database, blobs: LocalBlobStore) -> None:
    now = [T0]
    vectors = Vectors()
    store = RetentionStore(database)
    # The operator keeps everything; tenant A keeps 30 days of everything, its files 7.
    retention = Retention(
        store,
        _runner(database),
        lambda: dict.fromkeys(RETENTION_KINDS, 0),
        interval_s=3600,
        blobs=blobs,
        index=vectors,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    # The files it deletes leave the vector stores holding them (VectorCore.forget_files).
    forgotten: list[str] = []

    async def forget(file_ids: Collection[str]) -> int:
        forgotten.extend(file_ids)
        return len(file_ids)

    retention.forget_files = forget
    await store.set_policies("tn_a", {**ALL_30, "files": 7}, T0, AUDIT)
    await seed(database, blobs, "tn_a", "old", T0)
    await seed(
        database, blobs, "tn_a", "running", T0, batch_status="in_progress", fine_tuning_status="running"
    )
    await seed(database, blobs, "tn_a", "recent", T0 + timedelta(days=20))
    await seed(
        database, blobs, "tn_a", "expiring", T0 + timedelta(days=24), file_expires_at=T0 + timedelta(days=25)
    )
    await seed(database, blobs, "tn_b", "old", T0)
    before = {kind: await ids(database, kind) for kind in RETENTION_KINDS}

    now[0] = T0 + timedelta(days=1)
    assert sum((await retention.sweep()).values()) == 0
    assert await retention.due("tn_a", within_days=30) == {
        **dict.fromkeys(RETENTION_KINDS, 2),
        "files": 3,
        "batches": 1,
        "fine_tuning_jobs": 1,
    }

    now[0] = T0 + timedelta(days=31)  # A's "old" and "running" are 31 days old; "recent" 11; "expiring" 7
    deleted = await retention.sweep()

    for kind in RETENTION_KINDS:
        left = await ids(database, kind)
        gone = before[kind] - left
        assert all("tn_b" not in name for name in gone), kind  # no policy: untouched
        assert all(
            "tn_a_recent" in name or "tn_b" in name or "tn_a_running" in name or "expiring" in name
            for name in left
        ), (kind, left)
        assert any("tn_a_old" in name for name in gone), kind
    assert "batch_tn_a_running" in await ids(database, "batches")  # still running: spared
    assert "ftjob_tn_a_running" in await ids(database, "fine_tuning_jobs")
    # files: 7 days for A, so its 11-day-old file went too, and the 7-day-old one past its expires_at
    assert await ids(database, "files") == {"file_tn_b_old"}
    assert deleted["files"] == 4 and deleted["ledger"] == 2
    assert sorted(forgotten) == sorted(before["files"] - {"file_tn_b_old"})
    assert not blob_exists(blobs, "files/tn_a_old") and not blob_exists(blobs, "files/tn_a_recent")
    assert not blob_exists(blobs, "files/tn_a_expiring") and blob_exists(blobs, "files/tn_b_old")
    assert not blob_exists(blobs, "voice/tn_a_old") and blob_exists(blobs, "voice/tn_a_recent")
    assert blob_exists(blobs, "voice/tn_b_old")
    assert not blob_exists(blobs, "adapters/tn_a_old/adapter_model.safetensors")
    assert blob_exists(blobs, "adapters/tn_a_running/adapter_model.safetensors")
    assert blob_exists(blobs, "adapters/tn_b_old/adapter_model.safetensors")
    assert len(vectors.removed["tn_a"]) == 2 and "tn_b" not in vectors.removed
    # children of the deleted rows went with them (one of each per object; A lost 2 of 5 of most)
    assert await children(database) == {
        "response_events": 3,
        "conversation_items": 3,
        "batch_lines": 4,
        "memory_history": 3,
        "fine_tuning_events": 4,
    }
    # the policy change was audited with its actor
    async with database.session() as session:
        audit = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.set"))).one()
    assert (audit.actor, audit.target_id, audit.details["days"]["files"]) == ("admin:ops", "tn_a", 7)


async def test_defaults_and_a_tenants_forever(database: Database, blobs: LocalBlobStore) -> None:
    store = RetentionStore(database)
    defaults = {**dict.fromkeys(RETENTION_KINDS, 0), "responses": 30, "moderation_flags": 30}
    retention = Retention(
        store,
        _runner(database),
        lambda: defaults,
        interval_s=3600,
        blobs=blobs,
        clock=lambda: T0 + timedelta(days=40),
    )
    await store.set_policies("tn_a", {"responses": 0}, T0, AUDIT)  # A keeps its responses forever
    await seed(database, blobs, "tn_a", "old", T0)
    await seed(database, blobs, "tn_b", "old", T0)
    await retention.sweep()
    assert await ids(database, "responses") == {"resp_tn_a_old"}
    assert await ids(database, "moderation_flags") == set()
    assert await ids(database, "chat_completions") == {"chatcmpl_tn_a_old", "chatcmpl_tn_b_old"}
    # null takes A back to the default
    await store.set_policies("tn_a", {"responses": None}, T0, AUDIT)
    assert await store.policies("tn_a") == {}
    await retention.sweep()
    assert await ids(database, "responses") == set()


async def test_the_scheduled_job(database: Database, blobs: LocalBlobStore) -> None:
    """Through the real job runner and the real clock: the slot's job runs the sweep and queues the
    next slot; submitting a slot twice (two replicas) makes one job."""
    runner = _runner(database)
    retention = Retention(RetentionStore(database), runner, lambda: ALL_30, interval_s=3600, blobs=blobs)
    retention.register()
    await seed(database, blobs, "tn_a", "old", utcnow() - timedelta(days=40))
    await seed(database, blobs, "tn_a", "recent", utcnow() - timedelta(days=1))
    # a run that ended two days ago: its row is forgotten by this run
    await runner.submit("retention", None, {}, options=JobOptions(job_id="retention-3600"))
    async with database.session() as session:
        ended = utcnow() - timedelta(days=2)
        await session.execute(
            update(JobRow).where(JobRow.id == "retention-3600").values(status="completed", finished_at=ended)
        )
        await session.commit()
    await retention.schedule()
    await retention.schedule()
    slot = int((utcnow() - datetime(1970, 1, 1)).total_seconds()) // 3600 * 3600
    runner.start()
    try:
        done = await finished(runner, f"retention-{slot}")
    finally:
        await runner.stop()
    assert done.status == "completed" and done.result is not None and done.result["ledger"] == 1
    assert await ids(database, "ledger") == {"req_tn_a_recent"}
    following = await runner.get(f"retention-{slot + 3600}")
    assert following is not None and following.status == "queued"
    assert len(await runner.queue.list(kind="retention")) == 2
    assert await runner.get("retention-3600") is None


def _runner(database: Database) -> JobRunner:
    return JobRunner(JobQueue(database), RunnerPolicy(lease_s=10, poll_s=0.05, retry_backoff_s=0.0))


def test_the_settings_and_the_store_know_the_same_kinds() -> None:
    assert set(RETENTION_KINDS) == set(_TARGETS)


def test_a_ledger_retention_covers_a_budget_month() -> None:
    """Monthly budgets are counted from the ledger: a shorter retention is refused at startup."""
    with pytest.raises(ValidationError, match="at least 31"):
        Settings(retention_ledger_days=7)
    assert Settings(retention_ledger_days=31).retention_defaults()["ledger"] == 31
    # Everything is kept forever by default but the per-request memory recalls (a debugging record).
    assert Settings().retention_defaults() == {**dict.fromkeys(RETENTION_KINDS, 0), "memory_recalls": 30}


async def test_memories_leave_the_real_vector_index(database: Database, blobs: LocalBlobStore) -> None:
    """With the FAISS index memory search uses (its files in the blob store): an expired memory's
    vector is no longer found; a recent one is."""
    memories = MemoryStore(database)

    async def load(tenant_id: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await memories.vectors(tenant_id)).items()}

    index = FaissIndex(blobs, load)
    clock = T0 + timedelta(days=31)
    retention = Retention(
        RetentionStore(database),
        _runner(database),
        lambda: ALL_30,
        interval_s=3600,
        index=index,
        clock=lambda: clock,
    )
    await seed(database, blobs, "tn_a", "old", T0)
    await seed(database, blobs, "tn_a", "recent", T0 + timedelta(days=20))
    async with database.session() as session:
        seqs = dict((await session.execute(select(StoredMemory.id, StoredMemory.seq))).tuples().all())
    old, recent = seqs["mem_tn_a_old"], seqs["mem_tn_a_recent"]
    vector = np.array([1.0, 0.0], dtype=np.float32)
    await index.add("tn_a", {old: vector, recent: vector})
    await retention.sweep()
    hits = await index.search("tn_a", vector, 5, among={old, recent})
    assert [hit.seq for hit in hits] == [recent]
