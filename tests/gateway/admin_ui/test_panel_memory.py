"""The panel's memory page on a real gateway (real vLLM engines for chat and MiniLM embeddings, real
Redis and SQLite): an end user's memories with their history, the real search with its scores, the
PCA map with its text alternative, the entity graph (the user's entities and relations from the
gateway's Kuzu store, never another user's or tenant's), and
for a chat request id what memory retrieved and the exact block placed in the prompt; a tenant
admin sees its own tenant only (another tenant's id is a 404, another tenant's request id is not
found). Then the same page in headless chromium, with screenshots in <pytest tmp>/artefacts."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Browser

from gateway import Settings
from gateway.memory.graph import Entity, Relation
from gateway.routes.panel_memory import MAP_H, MAP_W, NODE_R, entity_drawing
from tests.gateway.admin_ui.panel_client import PanelGateway, panel_gateway
from tests.gateway.admin_ui.test_panel_browser import artefacts, browser, log_in

__all__ = ["artefacts", "browser"]  # the browser test's module fixtures, shared
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1500)]

FACTS = [
    "I am vegetarian and I never eat meat.",
    "My favourite sport is tennis.",
    "I live in Lisbon near the river.",
]


@dataclass
class World:
    gw: PanelGateway
    first: str
    second: str
    request_id: str
    used: dict[str, str]  # memory id -> score, from the chat answer's x-tantra-memory header


def _remember(url: str, secret: str, user: str, texts: list[str]) -> list[str]:
    body = {"messages": [{"role": "user", "content": t} for t in texts], "user_id": user, "infer": False}
    answer = httpx.post(
        f"{url}/v1/memories/", json=body, headers={"authorization": f"Token {secret}"}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["results"]]


@pytest.fixture(scope="module")
def world(
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    engine_url: str,
    embedding_engine_url: str,
    model: str,
    embedding_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("panel-memory")
    with panel_gateway(
        gateway_settings,
        admin_key,
        tmp,
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        memory_embedding_model=embedding_model,
        memory_extraction_model=model,
        memory_chat_default=True,
        memory_chat_min_score=-1.0,  # every memory of the user is retrieved, so each is shown
        # The graph is on; memories stored as given (`infer: false`) are not extracted into it (the
        # tiny model's extraction is not predictable): `_graph` writes known entities and relations
        # into the gateway's own Kuzu store, as the extraction would (test_memory_graph_engine.py).
        memory_graph_enabled=True,
        memory_graph_on_plain_add=False,
        blob_dir=tmp / "blobs",
    ) as gw:
        first = gw.admin.tenant(f"memory-a-{gw.suffix}")["id"]
        second = gw.admin.tenant(f"memory-b-{gw.suffix}")["id"]
        secret_a, _ = gw.admin.key(first, "a")
        secret_b, _ = gw.admin.key(second, "b")
        alice = _remember(gw.url, secret_a, "alice", FACTS)
        (cello,) = _remember(gw.url, secret_b, "alice", ["I play the cello every evening."])
        (jazz,) = _remember(gw.url, secret_a, "bob", ["I like jazz."])
        _graph(gw, first, second, alice, cello, jazz)
        chat = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret_a, max_retries=0, timeout=300)
        raw = chat.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": "What should I cook tonight?"}],
            max_tokens=4,
            user="alice",
        )
        used = dict(part.split(":") for part in raw.headers["x-tantra-memory"].split(","))
        gw.user("operator", "operator")
        gw.user("auditor", "auditor")
        gw.user("tenant", "tenant_admin", second)
        yield World(gw, first, second, raw.headers["x-request-id"], used)


def _graph(gw: PanelGateway, first: str, second: str, alice: list[str], cello: str, jazz: str) -> None:
    """Alice's entities and relations (tenant A), her namesake's (tenant B) and Bob's (tenant A), in
    the gateway's own graph store through `GraphStore.add`, as memory's extraction writes them."""
    assert gw.app is not None
    graph = gw.app.state.components.memory.core.graph.store

    async def write() -> None:
        lisbon = [Entity("user", "person"), Entity("Lisbon", "place")]
        await graph.add(first, "alice", alice[2], lisbon, [Relation("user", "lives_in", "Lisbon")])
        tennis = [Entity("tennis", "sport")]
        await graph.add(first, "alice", alice[1], tennis, [Relation("user", "plays", "tennis")])
        await graph.add(second, "alice", cello, [], [Relation("user", "plays", "cello")])
        await graph.add(first, "bob", jazz, [], [Relation("user", "likes", "jazz")])

    with ThreadPoolExecutor(1) as pool:  # its own loop: Kuzu's calls take the store's thread lock
        pool.submit(asyncio.run, write()).result()


def _cells(html: str, css: str) -> list[str]:
    return re.findall(rf'class="{css}">([^<]*)<', html)


def test_memories_history_map_and_graph_slot(world: World) -> None:
    operator = world.gw.panel(f"operator-{world.gw.suffix}")
    page = operator.http.get("/memory", params={"tenant_id": world.first, "user_id": "alice"})
    assert page.status_code == 200, page.text
    html = page.text
    assert all(fact in html for fact in FACTS) and "cello" not in html  # the other tenant's alice
    assert len(_cells(html, "memory-id")) == 3
    assert html.count("ADD ") == 3  # each memory's history
    embedding_map = html.split('id="embedding-map"')[1].split("</svg>")[0]
    assert embedding_map.count("<circle ") == 3 and 'role="img"' in html and 'id="map-table"' in html
    # The entity graph: the user's entities and relations from Kuzu, not Bob's nor the other alice's.
    assert _cells(html, "entity-name") == ["Lisbon", "tennis", "user"]
    facts = re.findall(r'<tr class="fact"><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>', html)
    assert facts == [("user", "lives_in", "Lisbon"), ("user", "plays", "tennis")]
    assert "jazz" not in html and "No graph store is configured." not in html
    # ... and drawn: a node per entity, an arrow per relation (named in its title).
    drawn = html.split('id="entity-graph"')[1].split("</svg>")[0]
    titles = re.findall(r'<circle class="entity"[^>]*><title>([^<]*)</title>', drawn)
    assert [title.split(" (")[0] for title in titles] == ["Lisbon", "tennis", "user"]
    assert re.findall(r'<line class="relation"[^>]*><title>([^<]*)</title>', drawn) == [
        "user lives_in Lisbon",
        "user plays tennis",
    ]
    assert world.request_id in html  # the recent requests with memory link to the chat


def test_search_uses_the_real_embeddings(world: World) -> None:
    operator = world.gw.panel(f"operator-{world.gw.suffix}")
    params = {"tenant_id": world.first, "user_id": "alice", "q": "What food does alice eat?"}
    html = operator.http.get("/memory", params=params).text
    section = html.split('id="search"')[1].split("</table>")[0]
    scores = [float(s) for s in _cells(section, "score")]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert section.index(FACTS[0]) < section.index(FACTS[1])  # MiniLM: the vegetarian fact first


def test_a_request_shows_what_was_retrieved_and_placed(world: World) -> None:
    operator = world.gw.panel(f"operator-{world.gw.suffix}")
    params = {"tenant_id": world.first, "user_id": "alice", "request_id": world.request_id}
    page = operator.http.get("/memory", params=params)
    assert page.status_code == 200, page.text
    ids, scores = _cells(page.text, "recall-id"), _cells(page.text, "recall-score")
    assert dict(zip(ids, scores, strict=True)) == world.used  # what the answer's header said
    placed = re.search(r'<pre id="placed"[^>]*>(.*?)</pre>', page.text, re.S)
    assert placed is not None
    block = placed.group(1)
    assert block.startswith("Remembered facts about the user:") and all(fact in block for fact in FACTS)
    tokens = re.search(r"Placed in the prompt: (\d+) tokens", page.text)
    assert tokens is not None and int(tokens.group(1)) == len(block) // 4 + 1
    missing = operator.http.get("/memory", params={"tenant_id": world.first, "request_id": "req-nothing"})
    assert missing.status_code == 404 and "No memory recall is recorded" in missing.text


def test_a_tenant_admin_sees_its_own_tenant_only(world: World) -> None:
    tenant = world.gw.panel(f"tenant-{world.gw.suffix}")
    own = tenant.http.get("/memory", params={"user_id": "alice"})
    assert own.status_code == 200 and "cello" in own.text and FACTS[0] not in own.text
    assert _cells(own.text, "entity-name") == ["cello", "user"] and "Lisbon" not in own.text
    assert f'value="{world.first}"' not in own.text
    tampered = tenant.http.get("/memory", params={"tenant_id": world.first, "user_id": "alice"})
    assert tampered.status_code == 404 and FACTS[0] not in tampered.text
    by_request = tenant.http.get("/memory", params={"request_id": world.request_id})
    assert by_request.status_code == 404 and FACTS[0] not in by_request.text
    auditor = world.gw.panel(f"auditor-{world.gw.suffix}")
    seen = auditor.http.get("/memory", params={"tenant_id": world.first, "user_id": "alice"})
    assert seen.status_code == 200 and FACTS[0] in seen.text


def test_the_memory_page_in_a_browser(browser: Browser, world: World, artefacts: Path) -> None:
    page = log_in(browser, world.gw.url, f"operator-{world.gw.suffix}")
    page.goto(world.gw.url + "/admin/ui/memory")
    page.get_by_label("Tenant").select_option(world.first)
    page.get_by_label("User id").fill("alice")
    page.get_by_label("Search").fill("Which sport?")
    page.get_by_label("User id").press("Enter")  # the keyboard alone submits the form
    page.wait_for_load_state()
    assert page.locator("#memories tbody tr").count() == 3
    assert page.locator("#search tbody tr").count() == 3
    assert page.locator("#embedding-map circle").count() == 3
    assert page.locator("#entities tbody tr").count() == 3 and page.locator("#graph tr.fact").count() == 2
    assert page.get_by_role("table", name="Relations").get_by_text("lives_in").is_visible()
    drawing = page.locator("#entity-graph")
    assert drawing.is_visible() and drawing.locator("circle").count() == 3
    assert drawing.locator("line").count() == 2
    page.screenshot(path=artefacts / "memory.png", full_page=True)
    page.get_by_role("link", name=world.request_id).click()
    page.wait_for_load_state()
    assert "Remembered facts" in page.locator("#placed").inner_text()
    page.screenshot(path=artefacts / "memory-request.png", full_page=True)


def test_the_entity_drawing_keeps_every_node_apart_and_inside() -> None:
    entities = [(f"e{n}", "", 1) for n in range(50)]
    facts = [("e0", "knows", "e25"), ("e1", "likes", "e1"), ("e2", "likes", "not listed")]
    drawing = entity_drawing(entities, facts)
    points = [(node["x"], node["y"]) for node in drawing["nodes"]]
    assert len(set(points)) == 50
    assert all(0 < x < MAP_W and 0 < y < MAP_H for x, y in points)
    assert min(math.dist(a, b) for a, b in itertools.combinations(points, 2)) > 2 * NODE_R
    # A self-relation and one naming an entity not drawn are left to the table.
    assert [(e["source"], e["target"]) for e in drawing["edges"]] == [("e0", "e25")]
    assert entity_drawing([], []) == {"nodes": [], "edges": []}
