"""The scope cache (gateway/memory/scope_cache.py): a scope's row numbers kept between searches under
versions in the session's real Redis, bumped by every committed write of the memory store (real
SQLite); then two gateway replicas sharing one store, one Redis and a shared backend (the real
Chroma server), each search through one replica right after a write through the other."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway import Settings, create_app
from gateway.memory.scope_cache import ScopeCache
from gateway.store import Database
from gateway.store.memories import Change, MemoryStore, Scope
from gateway.store.owned import Owner
from tests.gateway.helpers import AdminClient
from tests.gateway.memory.fake_models import CHAT, EMBEDDING, FakeModels
from tests.servers import ThreadedServer
from tests.services import ChromaServer, RedisServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient

T0 = datetime(2026, 12, 6, 9, 0, 0)
_names = itertools.count()


class _Counted:
    """The store's scope read, counted: what the cache saves is these reads."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.reads = 0

    async def __call__(self, owner: Owner, scope: Scope) -> list[tuple[int, datetime | None]]:
        self.reads += 1
        return await self.store.scope_rows(owner, scope)


@pytest.fixture
async def parts(
    tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[MemoryStore, _Counted, Redis]]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await database.migrate()
    redis = Redis.from_url(redis_server.url)
    yield MemoryStore(database), _Counted(MemoryStore(database)), redis
    await redis.aclose()
    await database.close()


def _cache(redis: Redis, read: _Counted, writer: MemoryStore) -> ScopeCache:
    cache = ScopeCache(redis, read)
    writer.written = cache.written
    return cache


async def _add(store: MemoryStore, owner: Owner, scope: Scope, expires: datetime | None = None) -> int:
    change = Change("ADD", str(uuid.uuid4()), str(uuid.uuid4()), text="x", vector=b"\0" * 8, scope=scope,
                    expires_at=expires)  # fmt: skip
    (memory,) = await store.apply(owner, [change], at=T0)
    assert memory is not None
    return memory.seq


async def test_rows_are_read_once_until_a_write_of_that_user(
    parts: tuple[MemoryStore, _Counted, Redis],
) -> None:
    store, read, redis = parts
    owner = Owner(f"t-{uuid.uuid4().hex[:8]}", "k")
    first = _cache(redis, read, store)
    other = ScopeCache(redis, read)  # another replica: same Redis, its own memory
    alice, bob = Scope(user_id="alice"), Scope(user_id="bob")
    a1 = await _add(store, owner, alice)
    b1 = await _add(store, owner, bob)
    for cache in (first, other, first, other):
        assert await cache.seqs(owner, alice, live_at=T0) == [a1]
    assert read.reads == 2  # once per replica
    assert await other.seqs(owner, bob, live_at=T0) == [b1]
    # Bob's write moves bob's version (and the tenant's), not alice's: her rows stay cached.
    b2 = await _add(store, owner, bob)
    reads = read.reads
    assert await other.seqs(owner, alice, live_at=T0) == [a1]
    assert read.reads == reads
    assert sorted(await other.seqs(owner, bob, live_at=T0)) == [b1, b2]
    # A scope without a user (an agent's) reads the tenant's version: any write moves it.
    agent = Scope(agent_id="helper")
    assert await other.seqs(owner, agent, live_at=T0) == []
    g1 = await _add(store, owner, Scope(user_id="carol", agent_id="helper"))
    assert await other.seqs(owner, agent, live_at=T0) == [g1]
    # Deleted through the store: gone at once on the other replica.
    await store.apply(owner, [Change("DELETE", (await store.by_seqs(owner, [a1]))[a1].id, "h")], at=T0)
    assert await other.seqs(owner, alice, live_at=T0) == []


async def test_expiry_is_applied_when_the_rows_are_read(parts: tuple[MemoryStore, _Counted, Redis]) -> None:
    store, read, redis = parts
    owner = Owner(f"t-{uuid.uuid4().hex[:8]}", "k")
    cache = _cache(redis, read, store)
    scope = Scope(user_id="u")
    keep = await _add(store, owner, scope)
    soon = await _add(store, owner, scope, expires=T0 + timedelta(minutes=5))
    assert sorted(await cache.seqs(owner, scope, live_at=T0)) == [keep, soon]
    assert await cache.seqs(owner, scope, live_at=T0 + timedelta(minutes=6)) == [keep]
    assert sorted(await cache.seqs(owner, scope, live_at=None)) == [keep, soon]
    assert read.reads == 1
    # The same rows the store reads itself.
    assert await store.seqs_in_scope(owner, scope, live_at=T0 + timedelta(minutes=6)) == [keep]


async def test_without_redis_it_reads_sql_and_tenants_stay_apart(
    parts: tuple[MemoryStore, _Counted, Redis],
) -> None:
    store, read, redis = parts
    one, two = Owner(f"t-{uuid.uuid4().hex[:8]}"), Owner(f"t-{uuid.uuid4().hex[:8]}")
    cache = _cache(redis, read, store)
    scope = Scope(user_id="same")
    mine = await _add(store, one, scope)
    theirs = await _add(store, two, scope)
    assert await cache.seqs(one, scope, live_at=T0) == [mine]
    assert await cache.seqs(two, scope, live_at=T0) == [theirs]
    down = ScopeCache(Redis.from_url("redis://127.0.0.1:1/0"), read)
    before = read.reads
    assert await down.seqs(one, scope, live_at=T0) == [mine]
    assert await down.seqs(one, scope, live_at=T0) == [mine]
    assert read.reads == before + 2


# Two replicas -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(
    gateway_settings: Callable[..., Settings],
    chroma_server: ChromaServer,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    models = FakeModels()
    tmp = tmp_path_factory.mktemp("scope-cache")
    with ThreadedServer(models.app) as fake:
        settings = {
            "database_url": f"sqlite+aiosqlite:///{tmp / 'store.db'}",
            "engine_url": fake.url,
            "memory_embedding_model": EMBEDDING,
            "memory_extraction_model": CHAT,
            "memory_backend": "chroma",
            "memory_chroma_url": chroma_server.url,
        }
        first = create_app(gateway_settings(blob_dir=tmp / "a", **settings))
        with ThreadedServer(first) as a:
            second = create_app(gateway_settings(blob_dir=tmp / "b", **settings))
            with ThreadedServer(second) as b:
                yield a.url, b.url


def test_no_stale_read_on_one_replica_after_a_write_through_the_other(
    replicas: tuple[str, str], admin_key: str
) -> None:
    a_url, b_url = replicas
    admin = AdminClient(a_url, admin_key)
    tenant = admin.tenant(f"scope-cache-{next(_names)}")
    key, _ = admin.key(tenant["id"], "k")
    admin.close()
    a, b = MemoryClient(api_key=key, host=a_url), MemoryClient(api_key=key, host=b_url)
    user = {"user_id": "u1"}

    def found_on_b(query: str) -> list[str]:
        return [r["memory"] for r in b.search(query, filters=user, top_k=10)["results"]]

    a.add("green tea every morning", infer=False, **user)
    assert found_on_b("green tea") == ["green tea every morning"]  # b's cache now holds u1's rows
    added = a.add("black coffee after lunch", infer=False, **user)["results"][0]["id"]
    assert "black coffee after lunch" in found_on_b("black coffee")
    a.update(added, text="espresso after lunch")
    assert "espresso after lunch" in found_on_b("espresso")
    a.delete(added)
    assert all("espresso" not in m for m in found_on_b("espresso after lunch"))
    a.delete_all(user_id="u1")
    assert found_on_b("green tea") == []
