"""What the memory API and memory in chat share: embedding texts, extracting facts, adding them
(deduplicated against the scope's memories), and searching a scope (docs/memory.md).

The embeddings and the extraction are the gateway's own requests to its own `/v1/embeddings` and
`/v1/chat/completions`, made in process (`Loopback`, as a batch's lines) as the caller's key: each is
authenticated, limited, routed, retried and written to the ledger like the same request over HTTP,
so the embedding and extraction tokens of a memory are counted where the key's other tokens are.

Extraction asks the served chat model for `{"facts": [string]}` with a JSON-schema `response_format`:
vLLM's guided decoding makes the answer parse even from a random-weight model; what comes back is
still checked (not JSON, not the shape, empty or overlong strings: dropped, never an error).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from starlette.types import ASGIApp

from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.auth import Principal
from gateway.memory.index import Vector, VectorIndex, from_bytes
from gateway.memory.query_cache import QueryCache
from gateway.memory.scope_cache import ScopeCache
from gateway.protocol.memory import FACTS_SCHEMA, MAX_FACTS, MAX_MEMORY_CHARS
from gateway.services.memory_graph import MemoryGraph, Related
from gateway.services.own_calls import embedded, post_json
from gateway.services.pii import Redactor
from gateway.store import utcnow
from gateway.store.memories import Change, Memory, MemoryStore, Scope, text_hash
from gateway.store.memory_events import Expiry
from gateway.store.owned import Owner

EXTRACTION_PROMPT = (
    "You keep a memory of facts about the user and their preferences. From the conversation below, "
    "list the distinct, self-contained facts worth remembering for later conversations, each one "
    'short sentence. Answer with JSON: {"facts": [...]}; an empty list when there is nothing new.'
)


@dataclass(frozen=True)
class MemoryOptions:
    embedding_model: str
    extraction_model: str
    extraction_max_tokens: int = 512
    dedupe_threshold: float = 0.92
    # Search queries' vectors kept (gateway/memory/query_cache.py), and for how long at most.
    query_cache: int = 1024
    query_cache_ttl_s: float = 300.0


@dataclass(frozen=True)
class Caller:
    """Whose memories, and the key (and request id) the gateway's own requests act as; with the
    key's principal when a request of that key is under way (a chat, the memory API), so that a
    search's query can be embedded directly (`MemoryCore.direct_queries`)."""

    owner: Owner
    request_id: str
    principal: Principal | None = None

    def call(self, n: int) -> InternalCall:
        return InternalCall(self.owner.key_id, f"{self.request_id}-mem{n}-{secrets.token_hex(3)}")


# A search query's vector computed without a request of the gateway to itself, its tokens in the
# ledger all the same (gateway/services/memory_query.py); the caller has a principal.
QueryEmbedder = Callable[[Caller, str], Awaitable[Vector]]


@dataclass(frozen=True)
class Found:
    memory: Memory
    score: float


class MemoryCore:
    def __init__(self, store: MemoryStore, index: VectorIndex, options: MemoryOptions) -> None:
        self.store = store
        self.index = index
        self.options = options
        self._app: ASGIApp | None = None
        # PII redaction of the memories stored, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None
        # The knowledge graph (docs/memory.md), when TANTRA_MEMORY_GRAPH_ENABLED.
        self.graph: MemoryGraph | None = None
        # Scopes' row numbers kept between searches (gateway/memory/scope_cache.py); None: SQL each time.
        self.scopes: ScopeCache | None = None
        self.queries = QueryCache(options.query_cache, options.query_cache_ttl_s)
        # With the gateway's own static model as the embedding model: queries embedded directly.
        self.direct_queries: QueryEmbedder | None = None

    def bind(self, app: ASGIApp) -> None:
        self._app = app

    # Calls to the gateway's own endpoints --------------------------------------------------------

    async def _post(self, caller: Caller, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._app is not None, "MemoryCore.bind(app) was not called"
        return await post_json(
            self._app, path, body, {ACTING_AS: caller.call(secrets.randbits(16))}, "memory"
        )

    async def post(self, caller: Caller, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request to the gateway's own endpoint as the caller's key (its JSON answer)."""
        return await self._post(caller, path, body)

    async def embed(self, caller: Caller, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        body = {"model": self.options.embedding_model, "input": list(texts)}
        return embedded(await self._post(caller, "/v1/embeddings", body), texts)

    async def extract(self, caller: Caller, messages: Sequence[dict[str, Any]]) -> list[str]:
        """The facts the extraction model finds in `messages` (checked, deduplicated, capped)."""
        transcript = "\n".join(f"{m.get('role', 'user')}: {text_of(m)}" for m in messages if text_of(m))
        if not transcript:
            return []
        body = {
            "model": self.options.extraction_model,
            "messages": [
                {"role": "system", "content": EXTRACTION_PROMPT},
                {"role": "user", "content": transcript},
            ],
            "max_tokens": self.options.extraction_max_tokens,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "facts", "schema": FACTS_SCHEMA, "strict": True},
            },
        }
        answer = await self._post(caller, "/v1/chat/completions", body)
        return parse_facts(answer)

    # Writes and searches --------------------------------------------------------------------------

    async def add(
        self,
        caller: Caller,
        scope: Scope,
        texts: Sequence[tuple[str, dict[str, Any]]],
        *,
        dedupe: bool,
        source: list[dict[str, Any]] | None = None,
        expires_at: datetime | None = None,
    ) -> list[tuple[str, Memory]]:
        """Store `texts` (each with its metadata) in `scope`. With `dedupe`, a text as near as the
        threshold to a memory of the scope updates that memory instead (an exact repeat changes
        nothing). The events and memories written, in order."""
        if not texts:
            return []
        if self.redactor is not None:  # before the embedding: the vector is the stored text's
            tenant_id = caller.owner.tenant_id
            clean = await self.redactor.texts(tenant_id, [text for text, _ in texts])
            texts = [(text, metadata) for text, (_, metadata) in zip(clean, texts, strict=True)]
            source = await self.redactor.stored(tenant_id, source)
        vectors = await self.embed(caller, [text for text, _ in texts])
        among = await self._scope_seqs(caller.owner, scope, live_at=None) if dedupe else []
        tenant = caller.owner.tenant_id
        changes: list[Change] = []
        for (text, metadata), vector in zip(texts, vectors, strict=True):
            target = await self._nearest(caller.owner, vector, among) if dedupe else None
            if target is not None and target.hash == text_hash(text):
                continue
            event, memory_id = ("UPDATE", target.id) if target is not None else ("ADD", new_memory_id())
            changes.append(
                Change(
                    event=event,
                    id=memory_id,
                    history_id=new_memory_id(),
                    text=text,
                    vector=vector.tobytes(),
                    metadata={**(target.metadata if target else {}), **metadata},
                    scope=scope,
                    input=source,
                    expires_at=expires_at,
                )
            )
        written = await self.store.apply(caller.owner, changes, at=utcnow())
        done = [(c.event, m) for c, m in zip(changes, written, strict=True) if m is not None]
        await self.index.add(tenant, {m.seq: from_bytes(m.vector) for _, m in done})
        if self.graph is not None and (dedupe or self.graph.options.on_plain_add):
            await self.graph_remember(caller, [m for _, m in done])
        return done

    async def graph_remember(self, caller: Caller, memories: Sequence[Memory]) -> None:
        assert self.graph is not None

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            return await self._post(caller, path, body)

        await self.graph.remember(post, caller.owner.tenant_id, memories)

    async def _nearest(self, owner: Owner, vector: Vector, among: Collection[int]) -> Memory | None:
        """The scope's memory nearest `vector`, if as near as the dedupe threshold."""
        hits = await self.index.search(owner.tenant_id, vector, 1, among=among)
        if not hits or hits[0].score < self.options.dedupe_threshold:
            return None
        return (await self.store.by_seqs(owner, [hits[0].seq])).get(hits[0].seq)

    async def _scope_seqs(self, owner: Owner, scope: Scope, *, live_at: datetime | None) -> Collection[int]:
        """The row numbers a search of `scope` is limited to: from the scope cache (a read-only
        array, the same object while the scope is unchanged), read alone from SQL, or, when the
        scope filters on metadata (matched in Python), from its rows."""
        if scope.metadata:
            rows = await self.store.in_scope(owner, scope)
            return [m.seq for m in rows if live_at is None or m.live(live_at)]
        if self.scopes is not None:
            return await self.scopes.seqs(owner, scope, live_at=live_at)
        return await self.store.seqs_in_scope(owner, scope, live_at=live_at)

    async def search(
        self, caller: Caller, scope: Scope, query: str, k: int, *, threshold: float | None = None
    ) -> list[Found]:
        # The scope's row numbers (SQL) and the query's vector (the embedding engine) at once: the
        # slower of the two, not their sum, is what a chat waits before its first token.
        among, vector = await asyncio.gather(
            self._scope_seqs(caller.owner, scope, live_at=utcnow()), self._query_vector(caller, query)
        )
        if len(among) == 0:
            return []
        hits = await self.index.search(caller.owner.tenant_id, vector, k, among=among)
        by_seq = await self._hit_rows(caller.owner, scope, among, [h.seq for h in hits])
        found = [Found(by_seq[h.seq], h.score) for h in hits if h.seq in by_seq]
        return [f for f in found if threshold is None or f.score >= threshold]

    async def _hit_rows(
        self, owner: Owner, scope: Scope, among: Collection[int], seqs: list[int]
    ) -> dict[int, Memory]:
        """The hits' rows: kept by the scope cache from an earlier search of the same scope version
        (gateway/memory/scope_cache.py), else read from SQL by row number (and kept)."""
        scopes = self.scopes
        if scopes is None or not isinstance(among, np.ndarray) or not seqs:
            return await self.store.by_seqs(owner, seqs)
        found = scopes.rows(owner, scope, among, seqs)
        missing = [seq for seq in seqs if seq not in found]
        if missing:
            read = await self.store.by_seqs(owner, missing)
            scopes.keep_rows(owner, scope, among, read)
            found.update(read)
        return found

    async def _query_vector(self, caller: Caller, query: str) -> Vector:
        """A search query's vector: kept from an earlier search of the same text by the tenant (no
        engine call, no tokens), else embedded: directly by the gateway's static model when it is
        the embedding model and the caller's principal is known, else by a request to itself."""
        key = (caller.owner.tenant_id, self.options.embedding_model, query)
        vector = self.queries.get(key)
        if vector is None:
            if self.direct_queries is not None and caller.principal is not None:
                vector = await self.direct_queries(caller, query)
            else:
                (vector,) = await self.embed(caller, [query])
            self.queries.put(key, vector)
        return vector

    async def update(
        self,
        caller: Caller,
        memory_id: str,
        *,
        text: str | None,
        metadata: dict[str, Any] | None,
        expires: Expiry | None = None,
    ) -> Memory | None:
        """New text (embedded again), metadata and/or expiry (`expires`; None: left as it is) for
        one memory, one UPDATE in its history."""
        if text is not None and self.redactor is not None:
            text = await self.redactor.stored(caller.owner.tenant_id, text)
        vector = (await self.embed(caller, [text]))[0].tobytes() if text is not None else None
        change = Change(
            "UPDATE", memory_id, new_memory_id(), text=text, vector=vector, metadata=metadata, expiry=expires
        )
        (memory,) = await self.store.apply(caller.owner, [change], at=utcnow())
        if memory is not None and vector is not None:
            await self.index.add(caller.owner.tenant_id, {memory.seq: from_bytes(memory.vector)})
            if self.graph is not None:
                await self.graph_remember(caller, [memory])
        return memory

    async def related(self, caller: Caller, scope: Scope, query: str) -> list[Related]:
        """The scope's memories the knowledge graph reaches from the query's entities (none when the
        graph is off)."""
        if self.graph is None:
            return []

        async def admit(ids: Collection[str]) -> Mapping[str, Memory]:
            # Only the memories the graph reached are read (by id, in scope, unexpired).
            return await self.store.named_in_scope(caller.owner, scope, ids, live_at=utcnow())

        return await self.graph.related(caller.owner.tenant_id, scope.user_id, query, admit)

    async def delete(self, owner: Owner, memories: Sequence[Memory]) -> None:
        changes = [Change("DELETE", m.id, new_memory_id()) for m in memories]
        await self.store.apply(owner, changes, at=utcnow())
        await self.index.remove(owner.tenant_id, [m.seq for m in memories])
        if self.graph is not None:
            await self.graph.store.forget(owner.tenant_id, [m.id for m in memories])


def new_memory_id() -> str:
    """A UUID, as mem0 names memories and history entries."""
    return str(uuid.uuid4())


def text_of(message: dict[str, Any]) -> str:
    """A message's text: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(p.strip() for p in parts if p.strip())
    return ""


def parse_facts(answer: dict[str, Any]) -> list[str]:
    """The facts of an extraction answer; anything malformed counts as none."""
    try:
        content = answer["choices"][0]["message"]["content"]
        facts = orjson.loads(content)["facts"]
    except (KeyError, IndexError, TypeError, orjson.JSONDecodeError):
        return []
    if not isinstance(facts, list):
        return []
    kept: list[str] = []
    for fact in facts:
        if isinstance(fact, str) and fact.strip() and fact.strip() not in kept:
            kept.append(fact.strip()[:MAX_MEMORY_CHARS])
    return kept[:MAX_FACTS]
