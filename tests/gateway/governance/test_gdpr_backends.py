"""GDPR erasure on the shared memory backends (ChromaDB's and pgvector's real servers), with the same
seeded world as tests/gateway/governance/test_gdpr.py on SQLite: erasing a user leaves none of the
user's vectors in the backend, as another replica's index sees it too, and the other user's intact;
erasing a tenant leaves the backend nothing of it. Then `python -m gateway memory copy` itself (a
subprocess, the gateway's own CLI) fills each shared backend from the FAISS files of the same store."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.blobs import LocalBlobStore
from gateway.jobs import JobQueue, JobRunner, RunnerPolicy
from gateway.memory import FaissIndex
from gateway.memory.chroma_index import ChromaIndex
from gateway.memory.index import Loader, Vector, VectorIndex, from_bytes
from gateway.memory.pgvector_index import PgvectorIndex
from gateway.services.gdpr import ERASE
from gateway.store import Database, Limits, Store
from gateway.store.gdpr import Subject
from gateway.store.memories import MemoryStore
from tests.gateway.governance.gdpr_seed import seed_user
from tests.gateway.governance.test_gdpr import AUDIT, World
from tests.services import ChromaServer, PostgresServer, pgvector_hnsw

_names = itertools.count()
ROOT = Path(__file__).resolve().parents[3]

Make = Callable[[Loader], VectorIndex]


@pytest.fixture(scope="module", params=["chroma", "pgvector"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str, Make]:
    """The backend's name, its address for the settings, and a maker of replicas' indexes."""
    if request.param == "chroma":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        return "chroma", server.url, lambda load: ChromaIndex("127.0.0.1", server.port, load)
    postgres: PostgresServer = request.getfixturevalue("pgvector_server")
    url = postgres.create_database(f"gdpr_vectors_{next(_names)}")
    return "pgvector", url, lambda load: PgvectorIndex(url, load, hnsw=pgvector_hnsw())


@pytest.fixture
async def world(backend: tuple[str, str, Make], tmp_path: Path) -> AsyncIterator[World]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gdpr.db'}")
    await database.migrate()
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    memories = MemoryStore(database)

    async def load(tenant_id: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await memories.vectors(tenant_id)).items()}

    index = backend[2](load)
    runner = JobRunner(JobQueue(database), RunnerPolicy(lease_s=10, poll_s=0.05, retry_backoff_s=0.0))
    made = World(database, blobs, index, runner)
    made.gdpr.register()
    store = Store(database)
    for name in ("t", "u"):
        tenant = await store.create_tenant(f"tenant-{name}-{next(_names)}", Limits(), audit=AUDIT)
        setattr(made, name, tenant.id)
    for tenant, user in ((made.t, "alice"), (made.t, "bob"), (made.u, "carol")):  # type: ignore[attr-defined]
        made.seeded[(tenant, user)] = await seed_user(database, blobs, index, tenant, user)
    runner.start()
    yield made
    await runner.stop()
    await index.close()
    await database.close()


async def test_erasure_reaches_the_shared_backend(world: World, backend: tuple[str, str, Make]) -> None:
    t, u = world.t, world.u  # type: ignore[attr-defined]
    alice, bob = world.seeded[(t, "alice")], world.seeded[(t, "bob")]
    other_replica = backend[2](world.index._load if isinstance(world.index, FaissIndex) else _no_load)
    assert set(alice.memory_seqs) <= await other_replica.ids(t)

    done = await world.run(ERASE, Subject(t, "alice"))
    assert done.result["sweep"]["clean"] is True and done.result["sweep"]["vectors"] == 0

    for index in (world.index, other_replica):
        held = await index.ids(t)
        assert not held & set(alice.memory_seqs) and set(bob.memory_seqs) <= held
    # Searching every row the tenant ever had for alice's own vector finds only bob's.
    from tests.gateway.governance.gdpr_seed import vector

    hits = await other_replica.search(
        t, vector(sum(f"{t}_alice".encode())), 5, among=[*alice.memory_seqs, *bob.memory_seqs]
    )
    assert {h.seq for h in hits} == set(bob.memory_seqs)

    done = await world.run(ERASE, Subject(u))
    assert done.result["sweep"]["clean"] is True, done.result["sweep"]
    assert await other_replica.ids(u) == set() and await world.index.ids(u) == set()
    await other_replica.close()


async def _no_load(tenant_id: str | None) -> dict[int, Vector]:
    return {}


async def test_the_copy_command_fills_a_backend_from_faiss(
    backend: tuple[str, str, Make], tmp_path: Path
) -> None:
    name, address, make = backend
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"
    database = Database(database_url)
    await database.migrate()
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    memories = MemoryStore(database)

    async def load(tenant_id: str | None) -> dict[int, Vector]:
        return {seq: from_bytes(data) for seq, data in (await memories.vectors(tenant_id)).items()}

    faiss = FaissIndex(blobs, load)
    tenants = [f"copy-{next(_names)}", f"copy-{next(_names)}"]
    seeded = {
        (tenant, user): await seed_user(database, blobs, faiss, tenant, user)
        for tenant in tenants
        for user in ("ann", "ben")
    }
    await database.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TANTRA_DATABASE_URL": database_url,
        "TANTRA_BLOB_DIR": str(tmp_path / "blobs"),
        "TANTRA_FILES_ENABLED": "false",
        "TANTRA_MEMORY_CHROMA_URL": address if name == "chroma" else "",
        "TANTRA_MEMORY_PGVECTOR_URL": address if name == "pgvector" else "",
        "TANTRA_MEMORY_PGVECTOR_HNSW": str(pgvector_hnsw()).lower(),
    }
    done = await _cli(env, "--from", "faiss", "--to", name, "--kind", "memory")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "memory: 4 vectors of 2 owners copied from faiss to " + name in done.stdout
    copied = make(load)
    for tenant in tenants:
        wanted = {seq for (t, _), s in seeded.items() if t == tenant for seq in s.memory_seqs}
        assert await copied.ids(tenant) == wanted
    await copied.close()
    same = await _cli(env, "--from", name, "--to", name)
    assert same.returncode == 2 and "same backend" in same.stderr


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "memory", "copy", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )
