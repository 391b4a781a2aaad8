"""The knowledge graph's extraction with the real engines: the tiny chat model (random weights) answers
the graph's JSON schema under guided decoding, so every answer parses; MiniLM embeds. Whatever it
extracts lands in Kuzu under the memory's tenant and user only, and search answers in the merged
shape. The graph's logic with chosen answers: test_memory_graph_units.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import Settings, create_app
from gateway.memory.graph import KuzuGraph
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient


@pytest.fixture(scope="module")
def graph_gateway(
    engine_url: str,
    embedding_engine_url: str,
    gateway_settings: Callable[..., Settings],
    model: str,
    embedding_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, KuzuGraph]]:
    tmp = tmp_path_factory.mktemp("memory-graph-engine")
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        memory_embedding_model=embedding_model,
        memory_extraction_model=model,
        memory_extraction_max_tokens=256,
        memory_graph_enabled=True,
        blob_dir=tmp / "blobs",
    )
    app = create_app(settings)
    with ThreadedServer(app) as server:
        yield server.url, app.state.components.memory.core.graph.store


def _entities(graph: KuzuGraph, tenant: str) -> list[list[Any]]:
    query = "MATCH (e:Entity) WHERE e.tenant = $tenant RETURN e.name, e.user"
    return asyncio.run(graph._run(lambda rows: rows(query, {"tenant": tenant})))


def test_the_real_model_extracts_a_graph_kept_in_its_scope(
    graph_gateway: tuple[str, KuzuGraph], admin: AdminClient, model: str
) -> None:
    url, graph = graph_gateway
    clients: dict[str, tuple[MemoryClient, str]] = {}
    for name in ("graph-engine-a", "graph-engine-b"):
        tenant = admin.tenant(name)
        secret, _ = admin.key(tenant["id"], name)
        clients[name] = (MemoryClient(api_key=secret, host=url), tenant["id"])
    a, tenant_a = clients["graph-engine-a"]
    b, tenant_b = clients["graph-engine-b"]
    mine = {a.add("Ana works at Acme in Lisbon.", user_id="u1", infer=False)["results"][0]["id"]}
    theirs = {b.add("Ana works at Acme in Lisbon.", user_id="u1", infer=False)["results"][0]["id"]}

    # One graph extraction per memory, through the gateway as the caller's key (in its ledger).
    rows = {r["model"]: r for r in admin.usage(group_by="model", tenant_id=tenant_a)}
    assert rows[model]["requests"] >= 1 and rows[model]["completion_tokens"] > 0

    found = a.search("Ana Acme Lisbon", filters={"user_id": "u1"}, enable_graph=True)
    assert "relations" in found and all(r["source"] in ("vector", "graph", "both") for r in found["results"])
    assert {r["memory_id"] for r in found["relations"]} <= mine
    # Whatever the random model named, each node is the tenant's and user's, and no graph search of
    # the other tenant (or of another user) reaches it.
    for name, user in _entities(graph, tenant_a):
        assert user == "u1"
        assert {f.memory_id for f in asyncio.run(graph.related(tenant_b, "u1", name))} <= theirs
        assert asyncio.run(graph.related(tenant_a, "u2", name)) == []
