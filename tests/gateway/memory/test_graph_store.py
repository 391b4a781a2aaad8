"""The graph stores on their own: writes, the 2-hop search, forgetting a memory's facts, erasure,
and that no query crosses a tenant or a user. Each test runs on a real embedded Kuzu database and,
when TANTRA_TEST_NEO4J_URL names a Neo4j 5 server (e.g. neo4j://neo4j:password@127.0.0.1:7687; its
tenants t, t1, t2 and t3 are erased), on that server through the official driver: the same portable
queries on both. No Neo4j server can run here, so those cases are skipped, saying why."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import neo4j
import pytest
from pydantic import ValidationError

from gateway.memory.graph import CypherGraph, Entity, KuzuGraph, Neo4jGraph, Relation, names_in
from gateway.memory.graph_url import neo4j_target
from gateway.services.memory_graph import parse_graph
from gateway.settings.schema import Settings

NEO4J_URL = os.environ.get("TANTRA_TEST_NEO4J_URL", "")
KINDS = [
    "kuzu",
    pytest.param(
        "neo4j", marks=pytest.mark.skipif(not NEO4J_URL, reason="no Neo4j server: set TANTRA_TEST_NEO4J_URL")
    ),
]


async def new_store(kind: str, directory: Path) -> CypherGraph:
    if kind == "kuzu":
        return KuzuGraph(directory / "kuzu")
    store = Neo4jGraph(NEO4J_URL)
    for tenant in ("t", "t1", "t2", "t3"):
        await store.erase(tenant, None)
    return store


@pytest.fixture(scope="module", params=KINDS)
async def graph(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CypherGraph]:
    store = await new_store(request.param, tmp_path_factory.mktemp("graph"))
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
    if request.param == "neo4j":
        for tenant in ("t1", "t2"):
            await store.erase(tenant, None)
    await store.close()


async def test_two_hops_from_the_query_entities(graph: CypherGraph) -> None:
    facts = await graph.related("t1", "u1", "Where does alice work?")
    found = {(f.source, f.relation, f.target, f.hops) for f in facts}
    assert found == {("Alice", "works_at", "Acme", 1), ("Acme", "located_in", "Lisbon", 2)}
    assert [f.hops for f in facts] == sorted(f.hops for f in facts)
    assert {f.memory_id for f in facts} == {"m1", "m2"}


async def test_a_users_facts_for_the_panel(graph: CypherGraph) -> None:
    assert await graph.facts("t1", "u1", 50) == [
        ("Acme", "located_in", "Lisbon"),
        ("Alice", "works_at", "Acme"),
        ("Lisbon", "capital_of", "Portugal"),
    ]
    assert await graph.facts("t1", "u1", 1) == [("Acme", "located_in", "Lisbon")]
    assert await graph.facts("t1", "u2", 50) == [("Alice", "likes", "Jazz")]
    assert await graph.facts("t2", "u1", 50) == [("alice", "lives_in", "Oslo")]
    assert await graph.facts("t3", "u1", 50) == []


async def test_a_users_entities_for_the_panel(graph: CypherGraph) -> None:
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


async def test_one_hop_and_no_entity(graph: CypherGraph) -> None:
    assert {f.memory_id for f in await graph.related("t1", "u1", "ALICE", hops=1)} == {"m1"}
    assert await graph.related("t1", "u1", "nothing known here") == []
    # The middle of the chain reaches both ends in one hop.
    assert {f.memory_id for f in await graph.related("t1", "u1", "lisbon", hops=1)} == {"m2", "m3"}


async def test_no_query_crosses_tenants_or_users(graph: CypherGraph) -> None:
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


@pytest.mark.parametrize("kind", KINDS)
async def test_forget_and_erase(kind: str, tmp_path: Path) -> None:
    store = await new_store(kind, tmp_path)
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


def test_a_neo4j_url_as_the_driver_takes_it() -> None:
    assert neo4j_target("neo4j://neo4j:p%40ss@graph:7687/memories") == (
        "neo4j://graph:7687",
        ("neo4j", "p@ss"),
        "memories",
    )
    assert neo4j_target("bolt+s://[::1]:7687") == ("bolt+s://[::1]:7687", None, None)
    for bad in ("http://u:secret@graph:7474", "u:secret@graph", "neo4j://"):
        with pytest.raises(ValueError) as raised:
            neo4j_target(bad)
        assert "secret" not in str(raised.value)


def test_the_settings_refuse_a_graph_url_the_driver_cannot_take(
    gateway_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ValidationError, match="bolt:// or neo4j://") as raised:
        gateway_settings(memory_graph_url="https://u:secret@graph:7474")
    assert "secret" not in str(raised.value)
    url = gateway_settings(memory_graph_url="neo4j://u:secret@graph:7687").graph_url()
    assert url == "neo4j://u:secret@graph:7687"


async def test_an_unreachable_neo4j_server_is_the_drivers_own_error() -> None:
    """The real driver, against a port nothing listens on: its ServiceUnavailable, not a hang."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Neo4jGraph(f"neo4j://neo4j:password@127.0.0.1:{port}")
    with pytest.raises(neo4j.exceptions.ServiceUnavailable):
        await store.related("t", "u", "alice")
    await store.close()
