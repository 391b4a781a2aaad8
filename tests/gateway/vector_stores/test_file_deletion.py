"""A deleted file leaves every vector store holding it, as OpenAI's `DELETE /v1/files/{id}` ("Delete
a file and remove it from all vector stores"), on each backend (FAISS, a real ChromaDB server, a
real PostgreSQL with pgvector): its store files and chunks, the stores' `file_counts` and
`usage_bytes`, search, and the chunks' vectors in each store's index; searches running meanwhile
never fail; a deleted file cannot be attached again. A GDPR erasure of an end user takes their
files out of the stores of another key too, and a file past its `expires_at` leaves its stores when
the file sweeper deletes it (retention's own path: test_retention.py). The real openai SDK is the
client; the engine is the stand-in of fake_engine.py (bag-of-words embeddings, a word tokenizer)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import update

from gateway import Settings, create_app
from gateway.blobs import LocalBlobStore
from gateway.memory.backends import vector_index
from gateway.memory.index import Vector
from gateway.store import Database
from gateway.store.file_models import StoredFile
from tests.gateway.helpers import AdminClient
from tests.gateway.vector_stores.fake_engine import EMBEDDING, FakeEngine
from tests.servers import ThreadedServer
from tests.services import ChromaServer, PostgresServer, pgvector_hnsw

TEA = "Green tea is brewed with water at eighty degrees for three minutes; boiling water makes it bitter."
ROME = "The Colosseum in Rome held fifty thousand spectators who watched gladiators fight."
SMALL: Any = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}}
LONG_TEA = " ".join(f"tea leaf {n} brewed green" for n in range(60))  # several chunks


@dataclass
class Gateway:
    url: str
    admin: AdminClient
    settings: Settings

    def client(self, tenant_id: str, user: str | None = None) -> openai.OpenAI:
        """A new key of the tenant; `user`: the end user the trusted proxy names on every request."""
        secret, _ = self.admin.key(tenant_id, user or "app")
        headers = {"x-forwarded-user": user} if user else None
        return openai.OpenAI(
            api_key=secret, base_url=self.url + "/v1", max_retries=0, default_headers=headers
        )

    def index_ids(self, store_id: str) -> set[int]:
        """The row numbers the store's index holds, read by an index of its own on the backend."""

        async def read() -> set[int]:
            async def nothing(_: str | None) -> dict[int, Vector]:
                return {}

            blobs = LocalBlobStore(self.settings.blob_dir)
            index = vector_index(self.settings, blobs, nothing, kind="vector-store")
            try:
                return await index.ids(store_id)
            finally:
                await index.close()

        return asyncio.run(read())


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with ThreadedServer(FakeEngine().app) as server:
        yield server.url


@pytest.fixture(scope="module", params=["faiss", "chroma", "pgvector"])
def gateway(
    request: pytest.FixtureRequest,
    fake: str,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    backend = request.param
    tmp: Path = tmp_path_factory.mktemp(f"file-deletion-{backend}")
    extra: dict[str, Any] = {}
    if backend == "chroma":
        chroma: ChromaServer = request.getfixturevalue("chroma_server")
        extra["memory_chroma_url"] = f"http://127.0.0.1:{chroma.port}"
    elif backend == "pgvector":
        postgres: PostgresServer = request.getfixturevalue("pgvector_server")
        extra["memory_pgvector_url"] = postgres.create_database(f"file_deletion_{tmp.name[-8:]}")
        extra["memory_pgvector_hnsw"] = pgvector_hnsw()
    settings = gateway_settings(
        # Its own store: another gateway of the session would claim its ingestion jobs.
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        engine_url=fake,
        vector_stores_embedding_model=EMBEDDING,
        memory_enabled=False,
        memory_backend=backend,
        blob_dir=tmp / "blobs",
        trusted_proxies=["127.0.0.1/32"],
        jobs_poll_s=0.05,
        files_sweep_interval_s=0.2,
        **extra,
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield Gateway(server.url, admin, settings)
        admin.close()


def _attach(client: openai.OpenAI, store_id: str, file_id: str) -> None:
    done = client.vector_stores.files.create_and_poll(
        file_id, vector_store_id=store_id, chunking_strategy=SMALL, poll_interval_ms=50
    )
    assert done.status == "completed", done.last_error


def test_a_deleted_file_leaves_every_store_holding_it(gateway: Gateway) -> None:
    client = gateway.client(gateway.admin.tenant(f"deletion-{gateway.settings.memory_backend}")["id"])
    tea = client.files.create(file=("tea.txt", LONG_TEA.encode()), purpose="assistants").id
    rome = client.files.create(file=("rome.txt", ROME.encode()), purpose="assistants").id
    both = client.vector_stores.create(name="both")
    only = client.vector_stores.create(name="tea only")
    for store_id, file_id in ((both.id, tea), (both.id, rome), (only.id, tea)):
        _attach(client, store_id, file_id)
    before = client.vector_stores.retrieve(both.id)
    tea_bytes = client.vector_stores.retrieve(only.id).usage_bytes
    assert before.file_counts.completed == 2 and before.usage_bytes > tea_bytes > 0
    tea_chunks = len(gateway.index_ids(only.id))
    assert tea_chunks > 1 and len(gateway.index_ids(both.id)) > tea_chunks

    # Searches of both stores run while the file is deleted: none fails, and once the deletion has
    # answered, none finds the file.
    failures: list[BaseException] = []
    deleted_at: list[float] = []
    late_hits: list[str] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            for store_id in (both.id, only.id):
                started = time.monotonic()
                try:
                    found = client.vector_stores.search(store_id, query="green tea leaf brewed")
                except Exception as exc:  # any failure is the finding
                    failures.append(exc)
                    return
                if deleted_at and started > deleted_at[0]:
                    late_hits.extend(r.file_id for r in found.data if r.file_id == tea)

    searchers = [threading.Thread(target=search) for _ in range(2)]
    for thread in searchers:
        thread.start()
    time.sleep(0.3)
    answer = client.files.delete(tea)
    deleted_at.append(time.monotonic())
    time.sleep(0.5)
    stop.set()
    for thread in searchers:
        thread.join(30)
    assert answer.deleted and not failures and not late_hits

    after = client.vector_stores.retrieve(both.id)
    assert after.file_counts.completed == after.file_counts.total == 1
    assert after.usage_bytes == len(ROME.encode())
    emptied = client.vector_stores.retrieve(only.id)
    assert emptied.file_counts.total == 0 and emptied.usage_bytes == 0
    assert [f.id for f in client.vector_stores.files.list(vector_store_id=both.id)] == [rome]
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(tea, vector_store_id=only.id)
    found = client.vector_stores.search(both.id, query="green tea leaf brewed Colosseum")
    assert {r.file_id for r in found.data} == {rome}
    # The vectors left the backend's index too: the store holding it alone has none.
    assert gateway.index_ids(only.id) == set()
    assert len(gateway.index_ids(both.id)) == 1
    # A deleted file cannot come back into a store (the Files API's 404).
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=only.id, file_id=tea)
    assert client.vector_stores.retrieve(only.id).file_counts.total == 0


def test_an_erased_users_files_leave_the_stores(gateway: Gateway) -> None:
    tenant_id = gateway.admin.tenant(f"erasure-{gateway.settings.memory_backend}")["id"]
    alice = gateway.client(tenant_id, user="alice")
    # Alice's file in a store another key of the tenant made, for no end user.
    app = gateway.client(tenant_id)
    mine = alice.files.create(file=("tea.txt", TEA.encode()), purpose="assistants").id
    theirs = app.files.create(file=("rome.txt", ROME.encode()), purpose="assistants").id
    store = app.vector_stores.create(name="shared")
    _attach(app, store.id, mine)
    _attach(app, store.id, theirs)
    assert app.vector_stores.retrieve(store.id).file_counts.completed == 2

    erased = gateway.admin.http.post(f"/admin/tenants/{tenant_id}/erasures", json={"user_id": "alice"})
    assert erased.status_code == 200, erased.text
    job = _finished(gateway.admin, f"/admin/tenants/{tenant_id}/erasures/{erased.json()['id']}")
    assert job["status"] == "completed" and job["result"]["sweep"]["clean"] is True, job
    assert job["result"]["erased"]["files"] == 1 and job["result"]["erased"]["chunks_of_files"] == 1
    kept = app.vector_stores.retrieve(store.id)
    assert kept.file_counts.total == 1 and kept.usage_bytes == len(ROME.encode())
    assert [f.id for f in app.vector_stores.files.list(vector_store_id=store.id)] == [theirs]
    assert {r.file_id for r in app.vector_stores.search(store.id, query="tea water Rome").data} == {theirs}
    assert len(gateway.index_ids(store.id)) == 1


def test_an_expired_file_leaves_the_stores_when_swept(gateway: Gateway) -> None:
    client = gateway.client(gateway.admin.tenant(f"expiry-{gateway.settings.memory_backend}")["id"])
    expiring = client.files.create(
        file=("tea.txt", TEA.encode()),
        purpose="assistants",
        expires_after={"anchor": "created_at", "seconds": 3600},
    ).id
    store = client.vector_stores.create(name="expiring")
    _attach(client, store.id, expiring)
    asyncio.run(_expire(gateway.settings.database_url, expiring))
    deadline = time.monotonic() + 30
    while client.vector_stores.retrieve(store.id).file_counts.total and time.monotonic() < deadline:
        time.sleep(0.1)  # the file sweeper's next round (every 0.2 s here)
    emptied = client.vector_stores.retrieve(store.id)
    assert emptied.file_counts.total == 0 and emptied.usage_bytes == 0
    assert client.vector_stores.search(store.id, query="green tea").data == []
    assert gateway.index_ids(store.id) == set()


async def _expire(database_url: str, file_id: str) -> None:
    """The file past its `expires_at` (an hour is the shortest OpenAI's API lets a test ask for)."""
    database = Database(database_url)
    try:
        async with database.session() as session:
            await session.execute(
                update(StoredFile).where(StoredFile.id == file_id).values(expires_at=StoredFile.created_at)
            )
            await session.commit()
    finally:
        await database.close()


def _finished(admin: AdminClient, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, Any] = admin.http.get(path).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{path} did not finish")
