"""Memory's knowledge graph: the `GraphStore` interface and its Kuzu backend (docs/memory.md).

The graph holds what the extraction model found in each memory: `Entity` nodes and `RELATES` edges
between them, and a `Memory` node per memory with `MENTIONS` edges to its entities (what a deletion
follows). Every node and edge carries `tenant` and `user`, and an entity's key is built from both,
so two users naming the same person have two nodes and no edge crosses between them; every query
filters on both as well.

The queries are plain Cypher with parameters (`MERGE`, `MATCH`, `OPTIONAL MATCH`, `DELETE`): one
`CypherGraph` runs them unchanged on either database, Kuzu (embedded, the default) or a Neo4j server
through its official driver (`TANTRA_MEMORY_GRAPH_URL`: one graph every replica shares). Only the
schema differs (Kuzu's typed `CREATE NODE TABLE`/`CREATE REL TABLE`, Neo4j's uniqueness constraints
and indexes). The Neo4j store is tested only when a server is named (`TANTRA_TEST_NEO4J_URL`): none
runs here.

Kuzu is embedded and allows one writer per database: every call runs in a worker thread under one
lock (its calls block, and a second connection writing at once would fail). Neo4j's driver is
thread-safe: each call is one managed transaction of its own session, in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import kuzu

from gateway.memory.graph_url import neo4j_target

MAX_NAME_CHARS = 200
# The longest entity name (in words) looked for in a query's text.
_MAX_NAME_WORDS = 5

_KUZU_SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS Entity(key STRING, tenant STRING, user STRING, name STRING, "
    "type STRING, PRIMARY KEY(key))",
    "CREATE NODE TABLE IF NOT EXISTS Memory(key STRING, id STRING, tenant STRING, user STRING, "
    "PRIMARY KEY(key))",
    "CREATE REL TABLE IF NOT EXISTS RELATES(FROM Entity TO Entity, relation STRING, memory_id STRING, "
    "tenant STRING, user STRING)",
    "CREATE REL TABLE IF NOT EXISTS MENTIONS(FROM Memory TO Entity, tenant STRING, user STRING)",
)
# Neo4j has no tables: a key is unique by constraint (what makes MERGE safe between replicas), and
# the scope filters are indexed.
_NEO4J_SCHEMA = (
    "CREATE CONSTRAINT tantra_entity_key IF NOT EXISTS FOR (e:Entity) REQUIRE e.key IS UNIQUE",
    "CREATE CONSTRAINT tantra_memory_key IF NOT EXISTS FOR (m:Memory) REQUIRE m.key IS UNIQUE",
    "CREATE INDEX tantra_entity_scope IF NOT EXISTS FOR (e:Entity) ON (e.tenant, e.user)",
    "CREATE INDEX tantra_memory_scope IF NOT EXISTS FOR (m:Memory) ON (m.tenant, m.id)",
    "CREATE INDEX tantra_relates_scope IF NOT EXISTS FOR ()-[r:RELATES]-() ON (r.tenant, r.user)",
)

# Runs one query with its parameters and returns its rows (a row: the RETURN clause's values).
Rows = Callable[[str, dict[str, Any]], list[list[Any]]]
T = TypeVar("T")

# The portable queries (Kuzu and Neo4j alike).
_MERGE_ENTITY = (
    "MERGE (e:Entity {key: $key}) "
    "ON CREATE SET e.tenant = $tenant, e.user = $user, e.name = $name, e.type = $type"
)
_MERGE_MEMORY = "MERGE (m:Memory {key: $key}) ON CREATE SET m.id = $id, m.tenant = $tenant, m.user = $user"
_MENTION = (
    "MATCH (m:Memory {key: $memory}), (e:Entity {key: $entity}) "
    "MERGE (m)-[r:MENTIONS]->(e) ON CREATE SET r.tenant = $tenant, r.user = $user"
)
_RELATE = (
    "MATCH (s:Entity {key: $source}), (o:Entity {key: $target}) "
    "MERGE (s)-[r:RELATES {relation: $relation, memory_id: $memory_id}]->(o) "
    "ON CREATE SET r.tenant = $tenant, r.user = $user"
)
_NEIGHBOURS = (
    "MATCH (s:Entity)-[r:RELATES]->(o:Entity) "
    "WHERE (s.key IN $keys OR o.key IN $keys) AND r.tenant = $tenant AND r.user = $user "
    "AND s.tenant = $tenant AND s.user = $user AND o.tenant = $tenant AND o.user = $user "
    "RETURN s.key, s.name, r.relation, o.key, o.name, r.memory_id"
)
_USER_FACTS = (
    "MATCH (s:Entity)-[r:RELATES]->(o:Entity) WHERE r.tenant = $tenant AND r.user = $user "
    "RETURN s.name, r.relation, o.name ORDER BY s.name, r.relation, o.name LIMIT $limit"
)
_USER_ENTITIES = (
    "MATCH (e:Entity) WHERE e.tenant = $tenant AND e.user = $user "
    "OPTIONAL MATCH (e)-[r:RELATES]-(:Entity) "
    "WITH e, count(r) AS n RETURN e.name, e.type, n ORDER BY e.name LIMIT $limit"
)
_FORGET_RELATIONS = (
    "MATCH (:Entity)-[r:RELATES]->(:Entity) WHERE r.tenant = $tenant AND r.memory_id IN $ids DELETE r"
)
_FORGET_MEMORIES = "MATCH (m:Memory) WHERE m.tenant = $tenant AND m.id IN $ids DETACH DELETE m"
_ORPHANS = (
    "MATCH (e:Entity) WHERE e.tenant = $tenant OPTIONAL MATCH (e)-[r]-() "
    "WITH e, count(r) AS n WHERE n = 0 DELETE e"
)
_ERASE_USER = (
    "MATCH (n:{label}) WHERE n.tenant = $tenant AND n.user = $user DETACH DELETE n",
    "MATCH (n:{label}) WHERE n.tenant = $tenant AND n.user = $user RETURN count(n)",
)
_ERASE_TENANT = (
    "MATCH (n:{label}) WHERE n.tenant = $tenant DETACH DELETE n",
    "MATCH (n:{label}) WHERE n.tenant = $tenant RETURN count(n)",
)


@dataclass(frozen=True)
class Entity:
    name: str
    type: str


@dataclass(frozen=True)
class Relation:
    source: str
    relation: str
    target: str


@dataclass(frozen=True)
class Fact:
    """A relation found by a graph search: which memory it came from and how many hops out of the
    query's entities it lies (1: it names one of them)."""

    source: str
    relation: str
    target: str
    memory_id: str
    hops: int


class GraphStore(Protocol):
    async def add(
        self,
        tenant_id: str | None,
        user: str | None,
        memory_id: str,
        entities: Sequence[Entity],
        relations: Sequence[Relation],
    ) -> None:
        """Write one memory's entities and relations (merged with the user's existing ones)."""
        ...

    async def related(
        self, tenant_id: str | None, user: str | None, text: str, *, hops: int = 2
    ) -> list[Fact]:
        """The relations up to `hops` out from the entities `text` names, nearest first."""
        ...

    async def facts(self, tenant_id: str | None, user: str, limit: int) -> list[tuple[str, str, str]]:
        """A user's relations as (entity, relation, entity), at most `limit` (the panel's view)."""
        ...

    async def entities(self, tenant_id: str | None, user: str, limit: int) -> list[tuple[str, str, int]]:
        """A user's entities as (name, type, relations touching it), at most `limit` (the panel's)."""
        ...

    async def forget(self, tenant_id: str | None, memory_ids: Collection[str]) -> None:
        """Remove these memories' relations, and the entities nothing else names any more."""
        ...

    async def erase(self, tenant_id: str | None, user: str | None) -> None:
        """Everything of a user (`user` given) or of a whole tenant (None)."""
        ...

    async def count(self, tenant_id: str | None, user: str | None) -> int:
        """Nodes left of a user, or of a tenant (the GDPR sweep's look into the graph)."""
        ...

    async def close(self) -> None: ...


def entity_key(tenant_id: str | None, user: str | None, name: str) -> str:
    """Names compare without case or repeated spaces; the scope is part of the key."""
    return f"{tenant_id or ''}\x1f{user or ''}\x1f{normal_name(name)}"


def normal_name(name: str) -> str:
    return " ".join(re.findall(r"\w+", name.lower()))[:MAX_NAME_CHARS]


def names_in(text: str) -> set[str]:
    """Every run of up to five words of `text`: the entity names it may mention."""
    words = normal_name(text).split()
    return {
        " ".join(words[i : i + n]) for n in range(1, _MAX_NAME_WORDS + 1) for i in range(len(words) - n + 1)
    }


class CypherGraph:
    """The `GraphStore`, written once over the portable queries; a database gives `_run`, which
    calls `work` with its `Rows` function in a worker thread (one transaction where it has them)."""

    async def _run(self, work: Callable[[Rows], T]) -> T:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def add(
        self,
        tenant_id: str | None,
        user: str | None,
        memory_id: str,
        entities: Sequence[Entity],
        relations: Sequence[Relation],
    ) -> None:
        scope = {"tenant": tenant_id or "", "user": user or ""}
        # Each entity's type and its name as first written, by its normal name.
        types = {normal_name(e.name): e.type for e in entities}
        names = {normal_name(e.name): e.name.strip() for e in entities}
        for relation in relations:
            for name in (relation.source, relation.target):
                types.setdefault(normal_name(name), "")
                names.setdefault(normal_name(name), name.strip())
        types.pop("", None)
        if not types:
            return

        def write(rows: Rows) -> None:
            memory = f"{tenant_id or ''}\x1f{memory_id}"
            rows(_MERGE_MEMORY, {"key": memory, "id": memory_id, **scope})
            for name, kind in types.items():
                key = entity_key(tenant_id, user, name)
                shown = names.get(name, name)[:MAX_NAME_CHARS]
                rows(_MERGE_ENTITY, {"key": key, "name": shown, "type": kind[:80], **scope})
                rows(_MENTION, {"memory": memory, "entity": key, **scope})
            for r in relations:
                source, target = normal_name(r.source), normal_name(r.target)
                if not source or not target or not r.relation.strip():
                    continue
                parameters = {
                    "source": entity_key(tenant_id, user, source),
                    "target": entity_key(tenant_id, user, target),
                    "relation": r.relation.strip()[:MAX_NAME_CHARS],
                    "memory_id": memory_id,
                    **scope,
                }
                rows(_RELATE, parameters)

        await self._run(write)

    async def related(
        self, tenant_id: str | None, user: str | None, text: str, *, hops: int = 2
    ) -> list[Fact]:
        frontier = {entity_key(tenant_id, user, name) for name in names_in(text)}
        scope = {"tenant": tenant_id or "", "user": user or ""}

        def walk(rows: Rows) -> list[Fact]:
            seen_keys = set(frontier)
            keys = set(frontier)
            found: dict[tuple[str, str, str, str], Fact] = {}
            for hop in range(1, hops + 1):
                if not keys:
                    break
                answer = rows(_NEIGHBOURS, {"keys": sorted(keys), **scope})
                keys = set()
                for source_key, source, relation, target_key, target, memory_id in answer:
                    fact = Fact(source, relation, target, memory_id, hop)
                    found.setdefault((source_key, relation, target_key, memory_id), fact)
                    keys |= {source_key, target_key} - seen_keys
                seen_keys |= keys
            return sorted(found.values(), key=lambda f: f.hops)

        return await self._run(walk) if frontier else []

    async def facts(self, tenant_id: str | None, user: str, limit: int) -> list[tuple[str, str, str]]:
        parameters = {"tenant": tenant_id or "", "user": user, "limit": max(int(limit), 0)}
        answer = await self._run(lambda rows: rows(_USER_FACTS, parameters))
        return [(str(source), str(relation), str(target)) for source, relation, target in answer]

    async def entities(self, tenant_id: str | None, user: str, limit: int) -> list[tuple[str, str, int]]:
        parameters = {"tenant": tenant_id or "", "user": user, "limit": max(int(limit), 0)}
        answer = await self._run(lambda rows: rows(_USER_ENTITIES, parameters))
        return [(str(name), str(kind or ""), int(n)) for name, kind, n in answer]

    async def forget(self, tenant_id: str | None, memory_ids: Collection[str]) -> None:
        if not memory_ids:
            return
        parameters = {"tenant": tenant_id or "", "ids": sorted(memory_ids)}

        def drop(rows: Rows) -> None:
            rows(_FORGET_RELATIONS, parameters)
            rows(_FORGET_MEMORIES, parameters)
            rows(_ORPHANS, {"tenant": parameters["tenant"]})

        await self._run(drop)

    async def erase(self, tenant_id: str | None, user: str | None) -> None:
        await self._run(lambda rows: _each_label(rows, tenant_id, user, count=False))

    async def count(self, tenant_id: str | None, user: str | None) -> int:
        return await self._run(lambda rows: _each_label(rows, tenant_id, user, count=True))


def _each_label(rows: Rows, tenant_id: str | None, user: str | None, *, count: bool) -> int:
    erase, counting = _ERASE_TENANT if user is None else _ERASE_USER
    parameters = {"tenant": tenant_id or ""} if user is None else {"tenant": tenant_id or "", "user": user}
    total = 0
    for label in ("Memory", "Entity"):
        if count:
            total += int(rows(counting.format(label=label), parameters)[0][0])
        else:
            rows(erase.format(label=label), parameters)
    return total


class KuzuGraph(CypherGraph):
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._connection: kuzu.Connection | None = None
        self._database: kuzu.Database | None = None

    # The one writer: every call goes through `_run`.

    def _connect(self) -> kuzu.Connection:
        if self._connection is None:
            self._directory.parent.mkdir(parents=True, exist_ok=True)
            self._database = kuzu.Database(str(self._directory))
            self._connection = kuzu.Connection(self._database)
            for statement in _KUZU_SCHEMA:
                self._connection.execute(statement)
        return self._connection

    def _rows(self, query: str, parameters: dict[str, Any]) -> list[list[Any]]:
        result = self._connect().execute(query, parameters)
        assert not isinstance(result, list)
        rows: list[list[Any]] = []
        while result.has_next():
            rows.append(list(result.get_next()))
        return rows

    async def _run(self, work: Callable[[Rows], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._rows)

        return await asyncio.to_thread(locked)

    async def close(self) -> None:
        def shut() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                if self._database is not None:
                    self._database.close()
                self._connection = self._database = None

        await asyncio.to_thread(shut)


class Neo4jGraph(CypherGraph):
    """One graph every replica shares, on a Neo4j server (5.x) through its official driver (the
    memory-backends extra). `url`: bolt:// or neo4j:// (+s, +ssc for TLS), credentials in its
    user-info part and a database other than the default as its path (`neo4j://u:pw@host:7687/db`)."""

    def __init__(self, url: str) -> None:
        self._uri, self._auth, self._database = neo4j_target(url)
        self._driver: Any = None
        self._ready = threading.Lock()

    def _connected(self) -> Any:
        with self._ready:
            if self._driver is None:
                import neo4j  # the memory-backends extra; only a Neo4j deployment needs it

                driver = neo4j.GraphDatabase.driver(self._uri, auth=self._auth)
                with driver.session(database=self._database) as session:
                    for statement in _NEO4J_SCHEMA:
                        session.run(statement).consume()
                self._driver = driver
            return self._driver

    async def _run(self, work: Callable[[Rows], T]) -> T:
        def managed() -> T:
            def transaction(tx: Any) -> T:
                return work(lambda query, parameters: [list(r.values()) for r in tx.run(query, parameters)])

            with self._connected().session(database=self._database) as session:
                return session.execute_write(transaction)

        return await asyncio.to_thread(managed)

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await asyncio.to_thread(driver.close)
