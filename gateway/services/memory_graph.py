"""Memory's knowledge graph (docs/memory.md): the entities and relations of each memory, extracted by a
served chat model with a JSON-schema `response_format` (as facts are, so vLLM's guided decoding makes
the answer parse), written into a `GraphStore` under the memory's tenant and user; and the relations
up to two hops out of the entities a search's query names, merged with the vector results.

A graph result can only name a memory the search's scope already admitted (the SQL rows handed in):
the graph, like the vector index, never decides who may see what.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import APIError
from gateway.memory.graph import Entity, Fact, GraphStore, Relation
from gateway.store.memories import Memory

log = logging.getLogger("tantra.memory")

# The memories of these ids the caller may be given (their scope's, unexpired), by id.
Admit = Callable[[Collection[str]], Awaitable[Mapping[str, Memory]]]
MAX_ENTITIES = 8
MAX_RELATIONS = 8
_MAX_NAME = 64
_NAME = {"type": "string", "minLength": 1, "maxLength": _MAX_NAME}

GRAPH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "maxItems": MAX_ENTITIES,
            "items": {
                "type": "object",
                "properties": {"name": _NAME, "type": _NAME},
                "required": ["name", "type"],
                "additionalProperties": False,
            },
        },
        "relations": {
            "type": "array",
            "maxItems": MAX_RELATIONS,
            "items": {
                "type": "object",
                "properties": {"source": _NAME, "relation": _NAME, "target": _NAME},
                "required": ["source", "relation", "target"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["entities", "relations"],
    "additionalProperties": False,
}

GRAPH_PROMPT = (
    "Extract a knowledge graph from the fact below. List the entities it names (people, places, "
    "organisations, things, preferences; the user is the entity 'user') with a one-word type, and "
    "the relations between them as source, relation (a short verb phrase, snake_case), target. "
    'Answer with JSON: {"entities": [...], "relations": [...]}.'
)

# What a graph-only result scores: 1 / (1 + hops), below any close vector match.
Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class GraphOptions:
    extraction_model: str
    max_tokens: int = 512
    on_plain_add: bool = True  # extract from memories stored as given (`infer: false`) too
    search_default: bool = True  # merge graph results into search unless a request says otherwise
    hops: int = 2


@dataclass(frozen=True)
class Extracted:
    entities: list[Entity]
    relations: list[Relation]


@dataclass(frozen=True)
class Related:
    """A memory a graph search reached, with the relations that reached it."""

    memory: Memory
    facts: list[Fact]

    @property
    def score(self) -> float:
        return 1.0 / (1 + min(f.hops for f in self.facts))


class MemoryGraph:
    def __init__(self, store: GraphStore, options: GraphOptions) -> None:
        self.store = store
        self.options = options

    async def extract(self, post: Post, text: str) -> Extracted:
        body = {
            "model": self.options.extraction_model,
            "messages": [{"role": "system", "content": GRAPH_PROMPT}, {"role": "user", "content": text}],
            "max_tokens": self.options.max_tokens,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "graph", "schema": GRAPH_SCHEMA, "strict": True},
            },
        }
        return parse_graph(await post("/v1/chat/completions", body))

    async def remember(self, post: Post, tenant_id: str | None, memories: Sequence[Memory]) -> int:
        """Each memory's entities and relations into the graph (an updated memory's old ones out
        first). The relations written; an extraction that fails leaves its memory out of the graph
        (the memory itself is kept) and is logged."""
        written = 0
        for memory in memories:
            try:
                found = await self.extract(post, memory.memory)
            except APIError as exc:
                log.warning("graph extraction failed for a memory (%s): %s", exc.status, exc.message)
                continue
            await self.store.forget(tenant_id, [memory.id])
            user = memory.scope.user_id
            await self.store.add(tenant_id, user, memory.id, found.entities, found.relations)
            written += len(found.relations)
        return written

    async def related(
        self, tenant_id: str | None, user: str | None, query: str, admit: Admit
    ) -> list[Related]:
        """The memories whose relations lie within `hops` of the query's entities, of those `admit`
        lets through (the caller's scope, unexpired), nearest first."""
        facts = await self.store.related(tenant_id, user, query, hops=self.options.hops)
        admitted = await admit({fact.memory_id for fact in facts}) if facts else {}
        by_memory: dict[str, list[Fact]] = {}
        for fact in facts:
            if fact.memory_id in admitted:
                by_memory.setdefault(fact.memory_id, []).append(fact)
        found = [Related(admitted[memory_id], kept) for memory_id, kept in by_memory.items()]
        return sorted(found, key=lambda r: -r.score)


def parse_graph(answer: dict[str, Any]) -> Extracted:
    """An extraction answer's entities and relations; anything malformed counts as none."""
    try:
        content = answer["choices"][0]["message"]["content"]
        found = orjson.loads(content)
    except (KeyError, IndexError, TypeError, orjson.JSONDecodeError):
        return Extracted([], [])
    if not isinstance(found, dict):
        return Extracted([], [])
    entities = [
        Entity(_text(e.get("name")), _text(e.get("type")))
        for e in _objects(found.get("entities"))[:MAX_ENTITIES]
        if _text(e.get("name"))
    ]
    relations = [
        Relation(_text(r.get("source")), _text(r.get("relation")), _text(r.get("target")))
        for r in _objects(found.get("relations"))[:MAX_RELATIONS]
        if _text(r.get("source")) and _text(r.get("relation")) and _text(r.get("target"))
    ]
    return Extracted(entities, relations)


def fact_object(fact: Fact) -> dict[str, Any]:
    """A relation as a search answer lists it (mem0's graph `relations`, with where it came from)."""
    return {
        "source": fact.source,
        "relationship": fact.relation,
        "target": fact.target,
        "destination": fact.target,  # mem0's name for the target
        "memory_id": fact.memory_id,
        "hops": fact.hops,
    }


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.strip()[:_MAX_NAME] if isinstance(value, str) else ""
