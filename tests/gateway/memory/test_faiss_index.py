"""The FAISS backend of memory search: exact (flat) below the threshold, HNSW above it, restricted to
the row numbers a scope allows, persisted in the blob store and rebuilt from SQL's vectors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import faiss
import numpy as np
import pytest

from gateway.blobs import LocalBlobStore
from gateway.memory import FaissIndex
from gateway.memory.index import Vector

DIM = 16


def _vectors(count: int, seed: int = 0) -> dict[int, Vector]:
    rng = np.random.default_rng(seed)
    return {seq: rng.standard_normal(DIM).astype(np.float32) for seq in range(1, count + 1)}


class _Sql:
    """Stands for the memories table's vectors (what an index is rebuilt from)."""

    def __init__(self) -> None:
        self.rows: dict[str | None, dict[int, Vector]] = {}

    async def load(self, tenant_id: str | None) -> Mapping[int, Vector]:
        return self.rows.get(tenant_id, {})


@pytest.fixture
def sql() -> _Sql:
    return _Sql()


@pytest.fixture
async def blobs(tmp_path: Path) -> LocalBlobStore:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.start()
    return store


async def _filled(index: FaissIndex, sql: _Sql, tenant: str, vectors: dict[int, Vector]) -> None:
    sql.rows.setdefault(tenant, {}).update(vectors)
    await index.add(tenant, vectors)


async def test_flat_search_finds_the_nearest_among_the_allowed_rows(blobs: LocalBlobStore, sql: _Sql) -> None:
    index = FaissIndex(blobs, sql.load, hnsw_threshold=100)
    vectors = _vectors(50)
    await _filled(index, sql, "t1", vectors)
    assert index.kind("t1") == "flat"
    hits = await index.search("t1", vectors[7], 3, among=set(vectors))
    assert hits[0].seq == 7 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # A scope that does not hold row 7 never sees it, however near it is.
    hits = await index.search("t1", vectors[7], 5, among={1, 2, 3})
    assert {hit.seq for hit in hits} <= {1, 2, 3} and len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_tenants_are_apart(blobs: LocalBlobStore, sql: _Sql) -> None:
    index = FaissIndex(blobs, sql.load, hnsw_threshold=100)
    await _filled(index, sql, "t1", _vectors(5, seed=1))
    other = {100 + seq: v for seq, v in _vectors(5, seed=2).items()}
    await _filled(index, sql, "t2", other)
    hits = await index.search("t1", other[101], 5, among=set(range(0, 200)))
    assert {hit.seq for hit in hits} <= set(range(1, 6))


async def test_remove_and_replace(blobs: LocalBlobStore, sql: _Sql) -> None:
    index = FaissIndex(blobs, sql.load, hnsw_threshold=100)
    vectors = _vectors(10)
    await _filled(index, sql, "t1", vectors)
    await index.remove("t1", {3})
    hits = await index.search("t1", vectors[3], 10, among=set(vectors))
    assert 3 not in {hit.seq for hit in hits} and len(hits) == 9
    await index.add("t1", {4: vectors[5]})  # row 4 now holds row 5's vector
    hits = await index.search("t1", vectors[5], 2, among={4, 5})
    assert {hit.seq for hit in hits} == {4, 5} and min(h.score for h in hits) == pytest.approx(1.0, abs=1e-5)


async def test_hnsw_above_the_threshold_with_good_recall(blobs: LocalBlobStore, sql: _Sql) -> None:
    index = FaissIndex(blobs, sql.load, hnsw_threshold=200)
    vectors = _vectors(150)
    await _filled(index, sql, "t1", vectors)
    assert index.kind("t1") == "flat"
    more = {seq + 150: v for seq, v in _vectors(250, seed=5).items()}
    await _filled(index, sql, "t1", more)
    assert index.kind("t1") == "hnsw"
    everything = {**vectors, **more}
    found = 0
    for seq in list(everything)[::10]:
        hits = await index.search("t1", everything[seq], 1, among=set(everything))
        found += hits[0].seq == seq
    assert found >= 38  # of 40: HNSW is approximate, but not by much at this size
    # The selector holds on HNSW too.
    hits = await index.search("t1", everything[9], 5, among={1, 2, 300})
    assert {hit.seq for hit in hits} <= {1, 2, 300}
    # A removal is forgotten through the SQL filter, then rebuilt out at the next write.
    await index.remove("t1", {9})
    del sql.rows["t1"][9]
    await index.add("t1", {999: everything[10]})
    hits = await index.search("t1", everything[9], 400, among=set(everything) | {999})
    assert 9 not in {hit.seq for hit in hits}


async def test_the_index_is_saved_and_loaded_or_rebuilt(
    blobs: LocalBlobStore, sql: _Sql, tmp_path: Path
) -> None:
    vectors = _vectors(20)
    first = FaissIndex(blobs, sql.load, hnsw_threshold=100)
    await _filled(first, sql, "t1", vectors)
    assert await blobs.size("memory-index/t1/faiss.index")
    # Another replica (or a restart) reads the file...
    empty = _Sql()
    second = FaissIndex(blobs, empty.load, hnsw_threshold=100)
    hits = await second.search("t1", vectors[4], 1, among=set(vectors))
    assert hits[0].seq == 4
    # ... and without the file, rebuilds from SQL.
    third = FaissIndex(LocalBlobStore(tmp_path / "other"), sql.load, hnsw_threshold=100)
    hits = await third.search("t1", vectors[4], 1, among=set(vectors))
    assert hits[0].seq == 4


@pytest.mark.parametrize("threshold", [100, 5])
async def test_purge_rebuilds_at_once_and_deletes_an_empty_index(
    blobs: LocalBlobStore, sql: _Sql, threshold: int
) -> None:
    """An erasure's `purge`: the rows gone from SQL leave the index in memory and its saved file now,
    HNSW included (whose `remove` only marks it stale); a tenant with nothing left has no file."""
    index = FaissIndex(blobs, sql.load, hnsw_threshold=threshold)
    await _filled(index, sql, "t1", _vectors(10))
    del sql.rows["t1"][3]
    await index.remove("t1", [3])
    await index.purge("t1")
    assert await index.ids("t1") == set(range(1, 11)) - {3}
    assert await FaissIndex(blobs, sql.load).ids("t1") == set(range(1, 11)) - {3}  # the saved file
    sql.rows["t1"].clear()
    await index.purge("t1")
    assert await index.ids("t1") == set() and not (blobs.root / "memory-index/t1/faiss.index").exists()


class _SlowSql(_Sql):
    """SQL whose vectors, once `hold` is set, come back only when the test lets them go: a rebuild
    read from it stays under way for as long as the test wants."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def load(self, tenant_id: str | None) -> Mapping[int, Vector]:
        if self.hold:
            self.reading.set()
            await self.release.wait()
        return await super().load(tenant_id)


async def test_a_rebuild_into_hnsw_does_not_hold_up_searches(blobs: LocalBlobStore) -> None:
    sql = _SlowSql()
    index = FaissIndex(blobs, sql.load, hnsw_threshold=20)
    vectors = _vectors(21)
    first = {seq: vectors[seq] for seq in range(1, 21)}
    sql.rows["t1"] = dict(first)
    await index.add("t1", first)
    assert index.kind("t1") == "flat"

    # The 21st memory passes the threshold: the HNSW index is built aside (here: its read of SQL
    # held), while searches go on against the flat index and are answered.
    sql.hold = True
    sql.rows["t1"][21] = vectors[21]
    adding = asyncio.create_task(index.add("t1", {21: vectors[21]}))
    await asyncio.wait_for(sql.reading.wait(), 10)
    hits = await asyncio.wait_for(index.search("t1", vectors[3], 1, among=set(first)), 10)
    assert hits[0].seq == 3 and index.kind("t1") == "flat" and not adding.done()

    sql.release.set()
    await asyncio.wait_for(adding, 30)
    assert index.kind("t1") == "hnsw"  # swapped in once built
    hits = await index.search("t1", vectors[21], 1, among=set(vectors))
    assert hits[0].seq == 21


async def test_searches_leave_the_other_threads_openmp_setting(blobs: LocalBlobStore, sql: _Sql) -> None:
    threads = faiss.omp_get_max_threads()
    index = FaissIndex(blobs, sql.load, hnsw_threshold=10)
    vectors = _vectors(30)
    await _filled(index, sql, "t1", vectors)
    for seq in (1, 2, 3):
        assert (await index.search("t1", vectors[seq], 1, among=set(vectors)))[0].seq == seq
    # The search's worker thread chose one OpenMP thread for itself only.
    assert faiss.omp_get_max_threads() == threads


async def test_hnsw_replaces_in_place_and_compacts_its_tombstones(blobs: LocalBlobStore, sql: _Sql) -> None:
    """An HNSW index replaces a row's vector without a rebuild from SQL (the old one a tombstone the
    selector never admits), keeps that across a save and load, and is rebuilt once its tombstones
    pass COMPACT_SHARE."""
    index = FaissIndex(blobs, sql.load, hnsw_threshold=5)
    vectors = _vectors(40)
    await _filled(index, sql, "t1", vectors)
    assert index.kind("t1") == "hnsw"
    loads = 0
    real_load = sql.load

    async def counted(tenant_id: str | None) -> Mapping[int, Vector]:
        nonlocal loads
        loads += 1
        return await real_load(tenant_id)

    index._load = counted
    fresh = _vectors(3, seed=9)
    # Row 4 twice (two generations), row 7 once.
    for seq, vector in ((4, fresh[1]), (4, fresh[2]), (7, fresh[3])):
        sql.rows["t1"][seq] = vector
        await index.add("t1", {seq: vector})
    assert loads == 0  # no rebuild from SQL
    for seq, vector in ((4, fresh[2]), (7, fresh[3])):
        hits = await index.search("t1", vector, 3, among=set(vectors))
        assert hits[0].seq == seq and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # The old vectors are no row's any more: not found, even looked for exactly.
    for old in (vectors[4], fresh[1], vectors[7]):
        hits = await index.search("t1", old, 40, among=set(vectors))
        assert [h.seq for h in hits].count(4) <= 1 and [h.seq for h in hits].count(7) <= 1
        assert all(h.score < 0.999 for h in hits if h.seq in (4, 7))
    # Saved and loaded by another replica: the same current vectors.
    other = FaissIndex(blobs, _Sql().load, hnsw_threshold=5)
    hits = await other.search("t1", fresh[2], 1, among={4, 5})
    assert hits[0].seq == 4 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    hits = await other.search("t1", vectors[4], 2, among={4})
    assert len(hits) == 1 and hits[0].score < 0.999
    assert await other.ids("t1") == set(vectors)
    # Removals are tombstones too; past COMPACT_SHARE of the index, the next write rebuilds it.
    gone = set(range(10, 20))
    await index.remove("t1", gone)
    for seq in gone:
        del sql.rows["t1"][seq]
    assert await index.ids("t1") == set(vectors) - gone
    hits = await index.search("t1", vectors[12], 40, among=set(vectors))
    assert hits and not {h.seq for h in hits} & gone
    await _filled(index, sql, "t1", {41: fresh[1]})
    assert loads == 1  # compacted: 13 tombstones of 44 vectors
    assert index._tenants["t1"].index.ntotal == 31 and index._tenants["t1"].tombstones == 0


def _scope_array(seqs: list[int]) -> np.ndarray:
    """A scope as the scope cache hands it: a read-only int64 array."""
    array = np.asarray(sorted(seqs), dtype=np.int64)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("threshold", [100, 10])  # flat, then HNSW (50 vectors above 10)
async def test_a_kept_scope_selector_follows_the_scope_and_the_index(
    blobs: LocalBlobStore, sql: _Sql, threshold: int
) -> None:
    index = FaissIndex(blobs, sql.load, hnsw_threshold=threshold)
    vectors = _vectors(50)
    await _filled(index, sql, "t1", vectors)
    scope = _scope_array(list(range(1, 26)))
    first = await index.search("t1", vectors[7], 3, among=scope)
    assert first[0].seq == 7
    assert len(index._selectors) == 1
    # The same array: its kept selector, the same answer.
    assert await index.search("t1", vectors[7], 3, among=scope) == first
    assert len(index._selectors) == 1
    # Another scope (another array) never gets the first one's rows.
    other = _scope_array(list(range(26, 51)))
    assert all(h.seq >= 26 for h in await index.search("t1", vectors[7], 5, among=other))
    # A writable array or a set is not kept: built per search, as before.
    assert (await index.search("t1", vectors[7], 3, among=set(range(1, 26))))[0].seq == 7
    assert len(index._selectors) == 2
    # Row 7 replaced by another vector (HNSW: its next generation; the kept selector is rebuilt).
    moved = vectors[40].copy()
    sql.rows["t1"][7] = moved
    await index.add("t1", {7: moved})
    assert (await index.search("t1", moved, 1, among=scope))[0].seq == 7
    # Row 7 removed: no search of the same scope array returns it.
    del sql.rows["t1"][7]
    await index.remove("t1", [7])
    assert all(h.seq != 7 for h in await index.search("t1", moved, 5, among=scope))
    assert all(h.seq != 7 for h in await index.search("t1", vectors[7], 5, among=scope))


async def test_kept_selectors_are_bounded(
    blobs: LocalBlobStore, sql: _Sql, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.memory.faiss_index.SELECTOR_ROWS", 40)
    index = FaissIndex(blobs, sql.load, hnsw_threshold=100)
    vectors = _vectors(50)
    await _filled(index, sql, "t1", vectors)
    scopes = [_scope_array(list(range(start, start + 15))) for start in (1, 16, 31)]
    for scope in scopes:
        await index.search("t1", vectors[1], 1, among=scope)
    assert index._selector_rows <= 40 and len(index._selectors) == 2
