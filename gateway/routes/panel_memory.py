"""The panel's memory page (/admin/ui/memory, issue 19 point 7, docs/memory.md "Seeing and
debugging memory"): for one tenant and one end user (mem0's `user_id`, or an agent or run id), the
memories and each one's history, a search over them through the real search path (the query
embedded by the served embedding model, scores as the API returns them), a 2-D map of their
embeddings (PCA, drawn on the server as SVG with a table as its text alternative), the entity graph
from the knowledge graph's store when the graph is on (the user's entities and relations, drawn as
SVG, with tables as its text alternative),
and, for a request id, what memory in chat retrieved (ids, scores) and the exact block it placed in
the prompt with its token count.

Nothing here runs JavaScript. A tenant admin reaches its own tenant only (another's id is the 404
of a missing tenant; another tenant's request id is not found). The search's embedding is a request
of the gateway to itself as the key that wrote the end user's newest memory, so its tokens land in
that tenant's ledger as every memory search's do.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gateway.errors import APIError
from gateway.memory.index import from_bytes
from gateway.routes.panel import Panel, render
from gateway.services.memory_core import Caller, Found, MemoryCore
from gateway.store import Store
from gateway.store.memories import Memory, Scope
from gateway.store.memory_recalls import Recalled, RecallStore
from gateway.store.owned import Owner

Entity = Annotated[str | None, Query(max_length=256)]
Text = Annotated[str | None, Query(max_length=1000)]
RequestId = Annotated[str | None, Query(max_length=160)]
SHOWN = 200
"""Memories listed and mapped at most (the newest); the page says how many there are in all."""
SEARCH_K = 10
GRAPH_FACTS = 50
MAP_W, MAP_H, MARGIN = 640, 400, 24
NODE_R = 6


class MemoryGraphView(Protocol):
    """What the page needs of a knowledge-graph store (issue 19 point 4; `GraphStore`, Kuzu's in
    gateway/memory/graph.py): the end user's entities (name, type, relations touching it) and facts
    as (entity, relation, entity) triples, of the tenant and that user only, at most `limit` each."""

    async def entities(
        self, tenant_id: str | None, user_id: str, limit: int
    ) -> list[tuple[str, str, int]]: ...

    async def facts(self, tenant_id: str | None, user_id: str, limit: int) -> list[tuple[str, str, str]]: ...


@dataclass(frozen=True)
class MemoryPanelSource:
    core: MemoryCore
    recalls: RecallStore
    graph: MemoryGraphView | None = None


@dataclass
class _View:
    memories: list[Memory] = field(default_factory=list)
    total: int = 0
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    found: list[Found] = field(default_factory=list)
    search_error: str | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    variance: tuple[float, float] = (0.0, 0.0)
    graph: list[tuple[str, str, str]] | None = None
    entities: list[tuple[str, str, int]] | None = None
    drawing: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recent: list[Recalled] = field(default_factory=list)


def add_memory_page(router: APIRouter, panel: Panel, store: Store, source: MemoryPanelSource) -> None:
    @router.get("/memory")
    async def memory_page(
        request: Request,
        tenant_id: str | None = None,
        user_id: Entity = None,
        agent_id: Entity = None,
        run_id: Entity = None,
        q: Text = None,
        request_id: RequestId = None,
    ) -> Response:
        identity, csrf = await panel.who(request)
        tenants = [t for t in await store.list_tenants() if identity.sees_tenant(t.id)]
        chosen = tenant_id or (tenants[0].id if tenants else None)
        scope = Scope(user_id=user_id or None, agent_id=agent_id or None, run_id=run_id or None)
        form = {"user_id": user_id or "", "agent_id": agent_id or "", "run_id": run_id or "", "q": q or ""}
        values: dict[str, Any] = {
            "tenants": tenants,
            "chosen": chosen,
            "form": form,
            "graph_on": source.graph,
        }
        if chosen is None:
            return render(request, "memory.html", csrf=csrf, view=_View(), **values)
        identity.require_tenant(chosen)  # a tampered id is the 404 of a missing tenant
        owner = Owner(chosen)
        view = _View() if scope.empty else await _scope_view(source, owner, scope)
        if q and not scope.empty:
            view.found, view.search_error = await _search(request, source, owner, scope, q)
        recall = await _recall(source, owner, request_id) if request_id else None
        status = 404 if request_id and recall is None else 200
        return render(
            request,
            "memory.html",
            status,
            csrf=csrf,
            view=view,
            recall=recall,
            request_id=request_id or "",
            **values,
        )


async def _scope_view(source: MemoryPanelSource, owner: Owner, scope: Scope) -> _View:
    memories = await source.core.store.in_scope(owner, scope)
    shown = list(reversed(memories[-SHOWN:]))  # newest first
    view = _View(memories=shown, total=len(memories))
    view.histories = await source.recalls.histories(owner, [m.id for m in shown])
    view.points, view.variance = embedding_map(shown)
    if scope.user_id is not None:
        view.recent = await source.recalls.of_user(owner, scope.user_id)
        if source.graph is not None:
            view.graph = await source.graph.facts(owner.tenant_id, scope.user_id, GRAPH_FACTS)
            view.entities = await source.graph.entities(owner.tenant_id, scope.user_id, GRAPH_FACTS)
            view.drawing = entity_drawing(view.entities, view.graph)
    return view


async def _search(
    request: Request, source: MemoryPanelSource, owner: Owner, scope: Scope, query: str
) -> tuple[list[Found], str | None]:
    key = await source.recalls.writer_key(owner, scope.user_id)
    request_id = getattr(request.state, "request_id", None) or f"panel-{secrets.token_hex(6)}"
    caller = Caller(Owner(owner.tenant_id, key), request_id)
    try:
        return await source.core.search(caller, scope, query, SEARCH_K), None
    except APIError as exc:  # the embedding model down, or the writing key revoked or over its limits
        return [], exc.message


async def _recall(source: MemoryPanelSource, owner: Owner, request_id: str) -> dict[str, Any] | None:
    """A request's recall with each memory's current text (None: a deleted memory)."""
    recalled = await source.recalls.of_request(owner, request_id)
    if recalled is None:
        return None
    rows = []
    for hit in recalled.found:
        memory = await source.core.store.get(owner, str(hit.get("id")))
        rows.append({**hit, "memory": memory.memory if memory is not None else None})
    return {"recalled": recalled, "rows": rows}


def embedding_map(memories: list[Memory]) -> tuple[list[dict[str, Any]], tuple[float, float]]:
    """Each memory's point on the first two principal components of the embeddings (in SVG
    coordinates), and the share of the variance each component explains. Vectors of another
    dimension than the most common one (an embedding model changed) are left off."""
    vectors = [(m, from_bytes(m.vector)) for m in memories]
    if not vectors:
        return [], (0.0, 0.0)
    sizes = [v.shape[0] for _, v in vectors]
    dim = max(set(sizes), key=sizes.count)
    kept = [(m, v) for m, v in vectors if v.shape[0] == dim]
    matrix = np.stack([v for _, v in kept]).astype(np.float64)
    centered = matrix - matrix.mean(axis=0)
    coords = np.zeros((len(kept), 2))
    variance = (0.0, 0.0)
    if len(kept) > 1:
        _, singular, axes = np.linalg.svd(centered, full_matrices=False)
        components = min(2, axes.shape[0])
        coords[:, :components] = centered @ axes[:components].T
        energy = float((singular**2).sum()) or 1.0
        shares = [float(s**2) / energy for s in singular[:2]] + [0.0, 0.0]
        variance = (round(shares[0], 3), round(shares[1], 3))
    points = []
    for n, ((memory, _), (x, y)) in enumerate(zip(kept, _scaled(coords), strict=True), start=1):
        label = memory.memory if len(memory.memory) <= 28 else memory.memory[:27] + "…"
        points.append({"n": n, "id": memory.id, "memory": memory.memory, "label": label, "x": x, "y": y})
    return points, variance


def _scaled(coords: np.ndarray) -> list[tuple[float, float]]:
    """Into the drawing, one scale for both axes (distances on the map stay comparable), centred."""
    low, high = coords.min(axis=0), coords.max(axis=0)
    middle = (low + high) / 2
    spread = float(max(high - low))
    scale = min((MAP_W - 2 * MARGIN) / spread, (MAP_H - 2 * MARGIN) / spread) if spread > 0 else 0.0
    xs = MAP_W / 2 + (coords[:, 0] - middle[0]) * scale
    ys = MAP_H / 2 - (coords[:, 1] - middle[1]) * scale  # SVG's y grows downwards
    return [(round(float(x), 1), round(float(y), 1)) for x, y in zip(xs, ys, strict=True)]


def entity_drawing(
    entities: list[tuple[str, str, int]], facts: list[tuple[str, str, str]]
) -> dict[str, list[dict[str, Any]]]:
    """The entity graph in SVG coordinates: the entities evenly on a circle (in the order listed, at
    most GRAPH_FACTS of them: a layout that needs no library and never overlaps two nodes), each
    relation an arrow from its source to its target, cut short at both circles, its name at the
    middle. A relation naming an entity not listed, or itself, is left to the table."""
    count = len(entities)
    radius = min(MAP_W, MAP_H) / 2 - 3 * MARGIN
    nodes, where = [], {}
    for n, (name, kind, relations) in enumerate(entities):
        angle = 2 * math.pi * n / max(count, 1) - math.pi / 2
        x, y = MAP_W / 2 + radius * math.cos(angle), MAP_H / 2 + radius * math.sin(angle)
        where[name] = (x, y)
        # Labels outward: left of a node on the circle's left half, right of one on its right half.
        anchor = "end" if math.cos(angle) < -0.1 else ("start" if math.cos(angle) > 0.1 else "middle")
        shift = {"end": -(NODE_R + 3), "start": NODE_R + 3, "middle": 0}[anchor]
        ly = y + (4 if anchor != "middle" else (-(NODE_R + 4) if math.sin(angle) < 0 else NODE_R + 13))
        node = {"name": name, "type": kind, "relations": relations, "x": round(x, 1), "y": round(y, 1)}
        nodes.append({**node, "lx": round(x + shift, 1), "ly": round(ly, 1), "anchor": anchor})
    edges = []
    for source, relation, target in facts:
        if source not in where or target not in where or source == target:
            continue
        (x1, y1), (x2, y2) = where[source], where[target]
        length = math.hypot(x2 - x1, y2 - y1) or 1.0
        dx, dy = (x2 - x1) / length, (y2 - y1) / length
        cut = NODE_R + 2
        edges.append(
            {
                "source": source,
                "relation": relation,
                "target": target,
                "x1": round(x1 + dx * cut, 1),
                "y1": round(y1 + dy * cut, 1),
                "x2": round(x2 - dx * cut, 1),
                "y2": round(y2 - dy * cut, 1),
                "mx": round((x1 + x2) / 2, 1),
                "my": round((y1 + y2) / 2 - 3, 1),
            }
        )
    return {"nodes": nodes, "edges": edges}
