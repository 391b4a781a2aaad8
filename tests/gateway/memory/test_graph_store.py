"""The Kuzu graph store on its own (a real embedded Kuzu database per module): writes, the 2-hop
search, forgetting a memory's facts, erasure, and that no query crosses a tenant or a user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.memory.graph import Entity, KuzuGraph, Relation, names_in
from gateway.services.memory_graph import parse_graph


@pytest.fixture(scope="module")
async def graph(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KuzuGraph]:
    store = KuzuGraph(Path(tmp_path_factory.mktemp("graph")) / "kuzu")
    # Alice (t1/u1): works at Acme, Acme is in Lisbon, Lisbon is in Portugal (three hops apart).
    await store.add(
        "t1",
        "u1",
        "m1",
        [Entity("Alice", "person"), Entity("Acme", "organisation")],
        [Relation("Alice", "works_at", "Acme")],
    )
    await store.add("t1", "u1", "m2", [], [Relation("Acme", "located_in", "Lisbon")])
    await store.add("t1", "u1", "m3", [], [Relation("Lisbon", "capital_of", "Portugal")])
    # The same names for another user of the tenant, and for another tenant.
    await store.add("t1", "u2", "m4", [], [Relation("Alice", "likes", "Jazz")])
    await store.add("t2", "u1", "m5", [], [Relation("alice", "lives_in", "Oslo")])
    yield store
    await store.close()


async def test_two_hops_from_the_query_entities(graph: KuzuGraph) -> None:
    facts = await graph.related("t1", "u1", "Where does alice work?")
    found = {(f.source, f.relation, f.target, f.hops) for f in facts}
    assert found == {("Alice", "works_at", "Acme", 1), ("Acme", "located_in", "Lisbon", 2)}
    assert [f.hops for f in facts] == sorted(f.hops for f in facts)
    assert {f.memory_id for f in facts} == {"m1", "m2"}


async def test_a_users_facts_for_the_panel(graph: KuzuGraph) -> None:
    assert await graph.facts("t1", "u1", 50) == [
        ("Acme", "located_in", "Lisbon"),
        ("Alice", "works_at", "Acme"),
        ("Lisbon", "capital_of", "Portugal"),
    ]
    assert await graph.facts("t1", "u1", 1) == [("Acme", "located_in", "Lisbon")]
    assert await graph.facts("t1", "u2", 50) == [("Alice", "likes", "Jazz")]
    assert await graph.facts("t2", "u1", 50) == [("alice", "lives_in", "Oslo")]
    assert await graph.facts("t3", "u1", 50) == []


async def test_a_users_entities_for_the_panel(graph: KuzuGraph) -> None:
    """Each entity once, with its type and the relations touching it; another user's or tenant's
    namesakes are theirs."""
    assert await graph.entities("t1", "u1", 50) == [
        ("Acme", "organisation", 2),
        ("Alice", "person", 1),
        ("Lisbon", "", 2),
        ("Portugal", "", 1),
    ]
    assert await graph.entities("t1", "u1", 2) == [("Acme", "organisation", 2), ("Alice", "person", 1)]
    assert await graph.entities("t1", "u2", 50) == [("Alice", "", 1), ("Jazz", "", 1)]
    assert await graph.entities("t2", "u1", 50) == [("Oslo", "", 1), ("alice", "", 1)]  # by name, as stored
    assert await graph.entities("t3", "u1", 50) == []


async def test_one_hop_and_no_entity(graph: KuzuGraph) -> None:
    assert {f.memory_id for f in await graph.related("t1", "u1", "ALICE", hops=1)} == {"m1"}
    assert await graph.related("t1", "u1", "nothing known here") == []
    # The middle of the chain reaches both ends in one hop.
    assert {f.memory_id for f in await graph.related("t1", "u1", "lisbon", hops=1)} == {"m2", "m3"}


async def test_no_query_crosses_tenants_or_users(graph: KuzuGraph) -> None:
    for tenant, user, allowed in (
        ("t1", "u1", {"m1", "m2", "m3"}),
        ("t1", "u2", {"m4"}),
        ("t2", "u1", {"m5"}),
    ):
        for query in ("alice", "acme", "jazz", "oslo", "lisbon portugal"):
            found = {f.memory_id for f in await graph.related(tenant, user, query)}
            assert found <= allowed, (tenant, user, query, found)
    assert {f.target for f in await graph.related("t2", "u1", "Alice")} == {"Oslo"}
    assert await graph.related("t3", "u1", "alice") == []
    assert await graph.related("t1", None, "alice") == []


async def test_forget_and_erase(tmp_path: Path) -> None:
    store = KuzuGraph(tmp_path / "kuzu")
    await store.add("t", "u", "a", [Entity("Bob", "person")], [Relation("Bob", "owns", "Rex")])
    await store.add("t", "u", "b", [], [Relation("Rex", "is_a", "dog")])
    await store.add("t", "v", "c", [], [Relation("Bob", "owns", "Cat")])
    await store.forget("t", ["a"])
    assert {f.memory_id for f in await store.related("t", "u", "bob rex")} == {"b"}
    # Bob's node went with the only fact naming him; Rex stays (memory b names it).
    assert await store.count("t", "u") == 3  # memory b, Rex, dog
    await store.erase("t", "u")
    assert await store.count("t", "u") == 0
    assert await store.count("t", "v") == 3
    await store.erase("t", None)
    assert await store.count("t", None) == 0
    await store.close()


def test_names_in_a_query() -> None:
    assert {"new york", "york", "i love new york"} <= names_in("I love New-York!")
    assert names_in("") == set()


def test_parse_graph_keeps_what_is_well_formed() -> None:
    def answer(content: str) -> dict[str, object]:
        return {"choices": [{"message": {"content": content}}]}

    good = parse_graph(
        answer(
            '{"entities": [{"name": " Ana ", "type": "person"}, {"name": "", "type": "x"}], '
            '"relations": [{"source": "Ana", "relation": "likes", "target": "tea"}, '
            '{"source": "Ana", "relation": "", "target": "x"}, 3]}'
        )
    )
    assert [(e.name, e.type) for e in good.entities] == [("Ana", "person")]
    assert [(r.source, r.relation, r.target) for r in good.relations] == [("Ana", "likes", "tea")]
    for bad in ("not json", '["a"]', '{"entities": 3}'):
        found = parse_graph(answer(bad))
        assert found.entities == [] and found.relations == []
    assert parse_graph({}).relations == []
