"""The knowledge graph through the memory API, with mem0's real `MemoryClient`, a real Kuzu database
and the stand-in engine (fake_models.py: the graph of each text is set by the test): extraction on
add, search merging graph results with vector results (each saying where it came from), deletion and
GDPR erasure removing a memory's facts, and no graph result crossing a tenant or a user. The real
engine's extraction: test_mem0_client.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import Settings, create_app
from gateway.memory.graph import KuzuGraph
from tests.gateway.helpers import AdminClient
from tests.gateway.memory.fake_models import CHAT, EMBEDDING, FakeModels
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient

WORKS = "Ana works at Acme"
ACME = "Acme has offices in Lisbon"
TEA = "Ana drinks green tea"


def _graph(*relations: tuple[str, str, str]) -> dict[str, Any]:
    names = {n for s, _, t in relations for n in (s, t)}
    return {
        "entities": [{"name": n, "type": "thing"} for n in sorted(names)],
        "relations": [{"source": s, "relation": r, "target": t} for s, r, t in relations],
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeModels, str]]:
    models = FakeModels()
    models.graphs = {
        WORKS: _graph(("Ana", "works_at", "Acme")),
        ACME: _graph(("Acme", "has_office_in", "Lisbon")),
        TEA: _graph(("Ana", "drinks", "green tea")),
    }
    with ThreadedServer(models.app) as server:
        yield models, server.url


@pytest.fixture(scope="module")
def gateway(
    fake: tuple[FakeModels, str],
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, AdminClient, KuzuGraph]]:
    tmp = tmp_path_factory.mktemp("memory-graph")
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        engine_url=fake[1],
        memory_embedding_model=EMBEDDING,
        memory_extraction_model=CHAT,
        memory_graph_enabled=True,
        memory_graph_dir=str(tmp / "graph"),
        ledger_flush_interval_s=0.1,
        blob_dir=tmp / "blobs",
    )
    app = create_app(settings)
    graph = app.state.components.memory.core.graph.store
    with ThreadedServer(app) as server:
        admin = AdminClient(server.url, admin_key)
        yield server.url, admin, graph
        admin.close()


@pytest.fixture(scope="module")
def new_client(gateway: tuple[str, AdminClient, KuzuGraph]) -> Callable[[str], tuple[MemoryClient, str]]:
    url, admin, _ = gateway

    def make(name: str) -> tuple[MemoryClient, str]:
        tenant = admin.tenant(name)
        secret, _ = admin.key(tenant["id"], name)
        return MemoryClient(api_key=secret, host=url), tenant["id"]

    return make


def _add(client: MemoryClient, text: str, user: str) -> str:
    return str(client.add(text, user_id=user, infer=False)["results"][0]["id"])


def test_search_merges_graph_results_two_hops_out(
    fake: tuple[FakeModels, str], new_client: Callable[[str], tuple[MemoryClient, str]]
) -> None:
    client, _ = new_client("graph-search")
    works, acme, tea = (_add(client, text, "u1") for text in (WORKS, ACME, TEA))
    asked = [r for r in fake[0].extractions if r["response_format"]["json_schema"]["name"] == "graph"]
    assert {r["messages"][-1]["content"] for r in asked} >= {WORKS, ACME, TEA}
    assert asked[-1]["response_format"]["json_schema"]["strict"] is True

    found = client.search("Where is Ana's employer?", filters={"user_id": "u1"}, top_k=2)
    sources = {r["id"]: r["source"] for r in found["results"]}
    # The two memories naming Ana by vector and by graph; Acme's office only by graph, 2 hops out.
    assert sources == {works: "both", tea: "both", acme: "graph"}
    hops = {(r["source"], r["relationship"], r["target"]): r["hops"] for r in found["relations"]}
    assert hops[("Ana", "works_at", "Acme")] == 1 and hops[("Acme", "has_office_in", "Lisbon")] == 2
    by_id = {r["id"]: r for r in found["results"]}
    assert by_id[acme]["score"] == pytest.approx(1 / 3)

    plain = client.search("Ana", filters={"user_id": "u1"}, enable_graph=False)
    assert "relations" not in plain and all(r["source"] == "vector" for r in plain["results"])


def test_deleting_a_memory_removes_its_facts(
    new_client: Callable[[str], tuple[MemoryClient, str]], gateway: tuple[str, AdminClient, KuzuGraph]
) -> None:
    client, tenant = new_client("graph-delete")
    works, _ = _add(client, WORKS, "u1"), _add(client, ACME, "u1")
    client.delete(works)
    found = client.search("Ana", filters={"user_id": "u1"})
    assert found["relations"] == []
    facts = asyncio.run(gateway[2].related(tenant, "u1", "ana acme lisbon"))
    assert {f.relation for f in facts} == {"has_office_in"}
    client.delete_all(user_id="u1")
    assert asyncio.run(gateway[2].count(tenant, "u1")) == 0


def test_no_graph_result_crosses_tenants_or_users(
    new_client: Callable[[str], tuple[MemoryClient, str]], gateway: tuple[str, AdminClient, KuzuGraph]
) -> None:
    (a, tenant_a), (b, tenant_b) = new_client("graph-a"), new_client("graph-b")
    mine = {_add(a, WORKS, "u1"), _add(a, ACME, "u1")}
    other_user, other_tenant = _add(a, TEA, "u2"), _add(b, TEA, "u1")
    # The same names everywhere: each scope sees its own facts only.
    for client, user, own in (
        (a, "u1", mine),
        (a, "u2", {other_user}),
        (b, "u1", {other_tenant}),
        (b, "u9", set()),
    ):
        found = client.search("Ana Acme Lisbon", filters={"user_id": user})
        assert {r["memory_id"] for r in found["relations"]} == own, user
        assert {r["id"] for r in found["results"]} <= own
    # The graph store itself, asked directly, keeps the scopes apart too.
    graph = gateway[2]
    assert {f.memory_id for f in asyncio.run(graph.related(tenant_b, "u1", "ana acme lisbon"))} == {
        other_tenant
    }
    assert {f.memory_id for f in asyncio.run(graph.related(tenant_a, "u2", "ana acme"))} == {other_user}
    assert {f.memory_id for f in asyncio.run(graph.related(tenant_a, "u1", "ana"))} == mine


def test_gdpr_erasure_removes_the_users_graph(
    new_client: Callable[[str], tuple[MemoryClient, str]], gateway: tuple[str, AdminClient, KuzuGraph]
) -> None:
    _, admin, graph = gateway
    client, tenant = new_client("graph-gdpr")
    _add(client, WORKS, "alice")
    _add(client, TEA, "bob")
    assert asyncio.run(graph.count(tenant, "alice")) > 0
    erased = admin.http.post(f"/admin/tenants/{tenant}/erasures", json={"user_id": "alice"})
    assert erased.status_code == 200, erased.text
    path = f"/admin/tenants/{tenant}/erasures/{erased.json()['id']}"
    deadline = time.monotonic() + 60
    while (job := admin.http.get(path).json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "completed" and job["result"]["sweep"]["clean"] is True, job
    assert job["result"]["sweep"]["graph"] == 0
    assert asyncio.run(graph.count(tenant, "alice")) == 0
    assert asyncio.run(graph.count(tenant, "bob")) > 0
