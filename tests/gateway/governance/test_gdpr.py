"""GDPR export and erasure on a real SQLite file and a real PostgreSQL, real blobs on disk, a real FAISS
index and the real job runner: users A and B of tenant T and a user of tenant U each hold data of
every kind. Exporting A gives a ZIP of A's objects and none of B's; erasing A leaves nothing of A in
SQL, the blob directory or the vector index (the job's own sweep says so, and this test looks
again), B and U intact, A's ledger rows pseudonymised with the totals unchanged, an earlier export
of A gone; erasing tenant U leaves nothing of U but its pseudonymised billing and its erased row."""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from gateway.blobs import LocalBlobStore
from gateway.jobs import JobQueue, JobRunner, RunnerPolicy
from gateway.memory import FaissIndex
from gateway.memory.index import Vector, VectorIndex, from_bytes
from gateway.memory.query_cache import QueryCache
from gateway.services.gdpr import ERASE, EXPORT, Gdpr, digest
from gateway.store import AuditContext, Database, Limits, Store
from gateway.store.gdpr import Subject
from gateway.store.gdpr_store import GdprStore
from gateway.store.job_rows import JobRow
from gateway.store.memories import MemoryStore
from gateway.store.models import ApiKey, AuditEvent, Tenant
from tests.gateway.governance.gdpr_seed import counts, ledger, seed_user
from tests.gateway.jobs.handlers import finished
from tests.services import PostgresServer

_names = itertools.count()
AUDIT = AuditContext(actor="user:dpo", request_id="req-gdpr", client_ip="10.0.0.7")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gdpr.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"gdpr_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()


class World:
    def __init__(
        self, database: Database, blobs: LocalBlobStore, index: VectorIndex, runner: JobRunner
    ) -> None:
        self.database, self.blobs, self.index, self.runner = database, blobs, index, runner
        # Memory's search queries kept on this replica (their texts are end users' words).
        self.queries = QueryCache()
        self.gdpr = Gdpr(
            GdprStore(database), runner, blobs=blobs, index=index, forget_queries=self.queries.forget
        )
        self.seeded: dict[tuple[str, str], Any] = {}

    async def run(self, kind: str, subject: Subject) -> Any:
        record = await self.gdpr.submit(kind, subject, AUDIT)
        done = await finished(self.runner, record.id)
        assert done.status == "completed", done.last_error
        return done


@pytest.fixture
async def world(database: Database, tmp_path: Path) -> AsyncIterator[World]:
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    memories = MemoryStore(database)

    async def load(tenant_id: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await memories.vectors(tenant_id)).items()}

    index = FaissIndex(blobs, load)
    runner = JobRunner(JobQueue(database), RunnerPolicy(lease_s=10, poll_s=0.05, retry_backoff_s=0.0))
    made = World(database, blobs, index, runner)
    made.gdpr.register()
    store = Store(database)
    for name in ("t", "u"):
        tenant = await store.create_tenant(f"tenant-{name}-{next(_names)}", Limits(), audit=AUDIT)
        await store.create_key(
            tenant.id,
            name="k",
            key_hash=f"{name}{next(_names)}".ljust(64, "0"),
            redacted="sk-x",
            limits=Limits(),
            expires_at=None,
            audit=AUDIT,
        )
        setattr(made, name, tenant.id)
    for tenant, user in ((made.t, "alice"), (made.t, "bob"), (made.u, "carol")):  # type: ignore[attr-defined]
        made.seeded[(tenant, user)] = await seed_user(database, blobs, index, tenant, user)
    runner.start()
    yield made
    await runner.stop()
    await index.close()


def _ids(archive: zipfile.ZipFile, kind: str) -> set[str]:
    rows = json.loads(archive.read(f"{kind}.json"))[kind]
    return {str(row.get("id") or row.get("request_id") or row.get("item_id")) for row in rows}


async def test_export_holds_the_user_and_no_one_else(world: World) -> None:
    t = world.t  # type: ignore[attr-defined]
    done = await world.run(EXPORT, Subject(t, "alice"))
    counts_in = done.result["counts"]
    assert counts_in["chat_completions"] == 1 and counts_in["ledger"] == 3
    data = b"".join([chunk async for chunk in world.gdpr.content(done)])  # type: ignore[union-attr]
    archive = zipfile.ZipFile(io.BytesIO(data))
    text = b"".join(archive.read(name) for name in archive.namelist())
    assert b"alice" in text and b"bob" not in text and b"carol" not in text
    assert _ids(archive, "files") == {f"file_{t}_alice"}
    assert archive.read(f"files/file_{t}_alice/train.jsonl") == f"the file of {t}_alice".encode()
    # A custom voice's clip and the consent recording it was made under: the audio itself.
    assert archive.read(f"custom_voices/voice_{t}_alice.wav") == f"the voice of {t}_alice".encode()
    assert archive.read(f"voice_consents/cons_{t}_alice") == f"the consent of {t}_alice".encode()
    assert _ids(archive, "memories") == {f"mem_{t}_alice"}
    index = json.loads(archive.read("vector_index.json"))
    assert [entry["in_index"] for entry in index] == [True] and len(index[0]["vector"]) == 8
    children = json.loads(archive.read("responses.json"))
    assert children["response_events"][0]["event"] == {"who": f"{t}_alice"}
    assert {
        "ledger.json",
        "batches.json",
        "feedback.json",
        "fine_tuning_jobs.json",
        "moderation_flags.json",
        "conversations.json",
        "memory_history.json",
        "jobs.json",
        "audit.json",
    } <= set(archive.namelist())


async def test_erasing_a_user(world: World) -> None:
    t, u = world.t, world.u  # type: ignore[attr-defined]
    alice, bob = world.seeded[(t, "alice")], world.seeded[(t, "bob")]
    before_t, before_u = await ledger(world.database, t), await ledger(world.database, u)
    earlier = await world.run(EXPORT, Subject(t, "alice"))
    earlier_key = earlier.result["blob_key"]
    bob_export = await world.run(EXPORT, Subject(t, "bob"))
    whole = await world.run(EXPORT, Subject(t))  # the tenant's: alice's data is in it too
    world.queries.put((t, "minilm", "where does alice live?"), np.ones(4, np.float32))
    world.queries.put((u, "minilm", "where does carol live?"), np.ones(4, np.float32))

    done = await world.run(ERASE, Subject(t, "alice"))
    assert world.queries.get((t, "minilm", "where does alice live?")) is None
    assert world.queries.get((u, "minilm", "where does carol live?")) is not None

    # The job's own sweep, then this test's look at the same places.
    assert done.result["sweep"] == {"clean": True, "kinds": {}, "tables": {}, "blobs": [], "vectors": 0}
    assert done.result["erased"]["ledger"] == 3 and done.result["erased"]["exports"] == 2
    assert set((await counts(world.database, t, "alice")).values()) == {0}
    assert set((await counts(world.database, t, "bob")).values()) == {1, 2}  # 2: memory history
    assert set((await counts(world.database, u, None)).values()) == {1, 2}
    for key in [*alice.blob_keys, earlier_key, whole.result["blob_key"]]:
        assert not (world.blobs.root / key).exists(), key
    for key in [*bob.blob_keys, bob_export.result["blob_key"]]:
        assert (world.blobs.root / key).exists(), key
    held = await world.index.ids(t)
    assert not held & set(alice.memory_seqs) and set(bob.memory_seqs) <= held
    # The index file itself was rebuilt: a fresh replica's load holds no vector of alice's.
    assert isinstance(world.index, FaissIndex)
    fresh = FaissIndex(world.blobs, world.index._load)
    assert not await fresh.ids(t) & set(alice.memory_seqs)

    after_t = await ledger(world.database, t)
    assert sum(r.cost_micros for r in after_t) == sum(r.cost_micros for r in before_t)
    assert sum(r.prompt_tokens for r in after_t) == sum(r.prompt_tokens for r in before_t)
    rows = {r.id: r for r in after_t}
    for row in before_t:
        now = rows[row.id]
        if row.request_id in alice.request_ids:
            assert (
                now.request_id.startswith("erased-") and now.client_request_id is None and now.media is None
            )
        else:
            assert now.request_id == row.request_id and now.media == {"images": 1}
    assert [(r.request_id, r.cost_micros) for r in await ledger(world.database, u)] == [
        (r.request_id, r.cost_micros) for r in before_u
    ]

    async with world.database.session() as session:
        entry = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "gdpr.erase"))).one()
        job = await session.get(JobRow, done.id)
    assert (entry.actor, entry.client_ip, entry.target_id) == ("user:dpo", "10.0.0.7", t)
    assert entry.details["user"] == digest(Subject(t, "alice")) and entry.details["sweep"]["clean"] is True
    assert entry.details["erased"]["files"] == 1
    assert (
        "alice" not in json.dumps(entry.details)
        and job is not None
        and "alice" not in json.dumps(job.payload)
    )
    assert "alice" not in json.dumps((await world.runner.get(done.id)).result)  # type: ignore[union-attr]


async def test_erasing_a_tenant(world: World) -> None:
    t, u = world.t, world.u  # type: ignore[attr-defined]
    before_u = await ledger(world.database, u)
    done = await world.run(ERASE, Subject(u))
    assert done.result["sweep"]["clean"] is True, done.result["sweep"]
    assert set((await counts(world.database, u, None)).values()) == {0}
    assert not [p for p in world.blobs.root.rglob("*") if p.is_file() and u in p.parts]
    assert await world.index.ids(u) == set()
    after_u = await ledger(world.database, u)
    assert sum(r.cost_micros for r in after_u) == sum(r.cost_micros for r in before_u) > 0
    assert all(r.request_id.startswith("erased-") and r.client_request_id is None for r in after_u)
    async with world.database.session() as session:
        tenant = await session.get(Tenant, u)
        keys = (await session.scalars(select(ApiKey).where(ApiKey.tenant_id == u))).all()
    assert tenant is not None and tenant.name == f"erased-{u}" and tenant.disabled
    assert keys and all(k.key_hash.startswith("erased-") and k.revoked_at for k in keys)
    # T is untouched.
    assert set((await counts(world.database, t, None)).values()) == {2, 4}
    # Erasing again finds nothing more to do, and the sweep stays clean.
    again = await world.run(ERASE, Subject(u))
    assert again.result["sweep"]["clean"] is True and again.result["erased"] == {}
