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

import numpy as np
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
        assert (await cache.seqs(owner, alice, live_at=T0)).tolist() == [a1]
    assert read.reads == 2  # once per replica
    assert (await other.seqs(owner, bob, live_at=T0)).tolist() == [b1]
    # Bob's write moves bob's version (and the tenant's), not alice's: her rows stay cached.
    b2 = await _add(store, owner, bob)
    reads = read.reads
    assert (await other.seqs(owner, alice, live_at=T0)).tolist() == [a1]
    assert read.reads == reads
    assert sorted((await other.seqs(owner, bob, live_at=T0)).tolist()) == [b1, b2]
    # A scope without a user (an agent's) reads the tenant's version: any write moves it.
    agent = Scope(agent_id="helper")
    assert (await other.seqs(owner, agent, live_at=T0)).tolist() == []
    g1 = await _add(store, owner, Scope(user_id="carol", agent_id="helper"))
    assert (await other.seqs(owner, agent, live_at=T0)).tolist() == [g1]
    # Deleted through the store: gone at once on the other replica.
    await store.apply(owner, [Change("DELETE", (await store.by_seqs(owner, [a1]))[a1].id, "h")], at=T0)
    assert (await other.seqs(owner, alice, live_at=T0)).tolist() == []


async def test_expiry_is_applied_when_the_rows_are_read(parts: tuple[MemoryStore, _Counted, Redis]) -> None:
    store, read, redis = parts
    owner = Owner(f"t-{uuid.uuid4().hex[:8]}", "k")
    cache = _cache(redis, read, store)
    scope = Scope(user_id="u")
    keep = await _add(store, owner, scope)
    soon = await _add(store, owner, scope, expires=T0 + timedelta(minutes=5))
    assert sorted((await cache.seqs(owner, scope, live_at=T0)).tolist()) == [keep, soon]
    assert (await cache.seqs(owner, scope, live_at=T0 + timedelta(minutes=6))).tolist() == [keep]
    assert sorted((await cache.seqs(owner, scope, live_at=None)).tolist()) == [keep, soon]
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
    assert (await cache.seqs(one, scope, live_at=T0)).tolist() == [mine]
    assert (await cache.seqs(two, scope, live_at=T0)).tolist() == [theirs]
    down = ScopeCache(Redis.from_url("redis://127.0.0.1:1/0"), read)
    before = read.reads
    assert (await down.seqs(one, scope, live_at=T0)).tolist() == [mine]
    assert (await down.seqs(one, scope, live_at=T0)).tolist() == [mine]
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


async def test_the_same_array_while_the_scope_is_unchanged_and_a_new_one_when_a_row_expires(
    parts: tuple[MemoryStore, _Counted, Redis],
) -> None:
    store, read, redis = parts
    owner = Owner(f"t-{uuid.uuid4().hex[:8]}", "k")
    cache = _cache(redis, read, store)
    scope = Scope(user_id="u")
    keep = await _add(store, owner, scope)
    soon = await _add(store, owner, scope, expires=T0 + timedelta(minutes=5))
    first = await cache.seqs(owner, scope, live_at=T0)
    assert not first.flags.writeable
    assert await cache.seqs(owner, scope, live_at=T0 + timedelta(minutes=4)) is first
    later = await cache.seqs(owner, scope, live_at=T0 + timedelta(minutes=5))
    assert later is not first and later.tolist() == [keep]
    assert await cache.seqs(owner, scope, live_at=T0 + timedelta(days=1)) is later
    # A clock set back: the expired row is live again, in a new array.
    assert sorted((await cache.seqs(owner, scope, live_at=T0)).tolist()) == [keep, soon]
    # A write: a new array.
    again = await cache.seqs(owner, scope, live_at=T0)
    await _add(store, owner, scope)
    assert await cache.seqs(owner, scope, live_at=T0) is not again


async def test_hits_rows_are_kept_per_scope_version_and_dropped_by_writes_and_erasures(
    parts: tuple[MemoryStore, _Counted, Redis],
) -> None:
    store, read, redis = parts
    owner = Owner(f"t-{uuid.uuid4().hex[:8]}", "k")
    cache = _cache(redis, read, store)
    other = ScopeCache(redis, read)  # another replica
    scope = Scope(user_id="u")
    a = await _add(store, owner, scope)
    b = await _add(store, owner, scope)
    for replica in (cache, other):
        among = await replica.seqs(owner, scope, live_at=T0)
        assert replica.rows(owner, scope, among, [a, b]) == {}
        replica.keep_rows(owner, scope, among, await store.by_seqs(owner, [a, b]))
        assert set(replica.rows(owner, scope, among, [a, b])) == {a, b}
    # Rows are only kept in the entry whose array the search used: a stale array keeps nothing.
    stale = np.asarray([a, b], dtype=np.int64)
    cache.keep_rows(owner, scope, stale, {})
    assert cache.rows(owner, scope, stale, [a]) == {}
    # An update through the store on one replica: the other's kept rows go with its version.
    memory = (await store.by_seqs(owner, [a]))[a]
    await store.apply(owner, [Change("UPDATE", memory.id, "h2", text="new text", vector=b"\0" * 8)], at=T0)
    among = await other.seqs(owner, scope, live_at=T0)
    assert other.rows(owner, scope, among, [a, b]) == {}
    other.keep_rows(owner, scope, among, await store.by_seqs(owner, [a, b]))
    assert other.rows(owner, scope, among, [a])[a].memory == "new text"
    # An erasure or a retention sweep (outside the store's writes) moves the tenant's version:
    # every replica reads every scope of the tenant again, with no rows kept.
    await cache.erased(owner.tenant_id)
    before = read.reads
    among = await other.seqs(owner, scope, live_at=T0)
    assert read.reads == before + 1
    assert other.rows(owner, scope, among, [a, b]) == {}
    # Another tenant's scopes are not moved by it.
    elsewhere = Owner(f"t-{uuid.uuid4().hex[:8]}", "k")
    await _add(store, elsewhere, scope)
    await other.seqs(elsewhere, scope, live_at=T0)
    reads = read.reads
    await cache.erased(owner.tenant_id)
    await other.seqs(elsewhere, scope, live_at=T0)
    assert read.reads == reads
