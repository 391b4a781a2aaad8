"""ChromaDB (its own server, reached over HTTP) behind `VectorIndex`: a memory backend replicas share.

One collection per tenant (per vector store for the vector stores API), cosine space; each vector's
Chroma id is its SQL row number and its metadata carries that number (`seq`) so that a search's scope
is a `where` filter Chroma applies on the server: the rows the caller's tenant, user, agent and run
admit (`among`, read from SQL) are the only ones a query can return, and another tenant's rows are
in another collection. The text, scope and history stay in SQL as for FAISS. A scope larger than one
filter can carry is first tried as a plain query (post-filtered), then searched in parts.

chromadb's own `AsyncHttpClient` is used: it speaks Chroma's v2 HTTP API, and keeps the client's
shape (collections, `where` filters) the docs describe, so no request is hand-built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from gateway.memory.index import Hit, Loader, Vector, normalized

# Chroma's collection names: 3-512 characters of [a-zA-Z0-9._-], starting and ending alphanumeric.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,200}[a-zA-Z0-9]")
_BATCH = 1000  # rows per upsert and delete: under Chroma's own max batch size
# Row numbers per `$in` filter. Chroma's SQLite refuses a statement with more variables than it allows
# and a filter of about 16,380 ids already fails ("too many SQL variables"); a larger scope is searched
# in parts of this size, all at once, and their nearest merged.
_FILTER_IDS = 8000
# Before that, a scope that large is tried without a filter: when the collection's nearest
# `k * _OVERSAMPLE` rows hold k the scope admits, they are its nearest k (a nearer admitted row would
# be among them), so one plain query answers a user who holds most of the tenant's rows.
_OVERSAMPLE = 4


class ChromaIndex:
    def __init__(
        self, host: str, port: int, load: Loader, *, prefix: str = "memory", filter_ids: int = _FILTER_IDS
    ) -> None:
        self._host, self._port = host, port
        self._filter_ids = filter_ids
        self._load = load
        self._prefix = prefix
        self._client: Any = None
        self._collections: dict[str | None, Any] = {}
        self._connect = asyncio.Lock()

    def collection_name(self, tenant_id: str | None) -> str:
        name = f"{self._prefix}-{tenant_id or 'anonymous'}"
        if _NAME.fullmatch(name):
            return name
        # A tenant id Chroma would refuse as a name: its digest, still one collection per tenant.
        return f"{self._prefix}-{hashlib.sha256(name.encode()).hexdigest()[:40]}"

    async def add(self, tenant_id: str | None, vectors: Mapping[int, Vector]) -> None:
        items = list(vectors.items())
        for start in range(0, len(items), _BATCH):
            part = items[start : start + _BATCH]
            await self._on(
                tenant_id,
                "upsert",
                create=True,
                ids=[str(seq) for seq, _ in part],
                embeddings=np.stack([normalized(v) for _, v in part]),
                metadatas=[{"seq": seq} for seq, _ in part],
            )

    async def remove(self, tenant_id: str | None, seqs: Collection[int]) -> None:
        ids = [str(seq) for seq in seqs]
        for start in range(0, len(ids), _BATCH):
            await self._on(tenant_id, "delete", ids=ids[start : start + _BATCH])

    async def search(
        self, tenant_id: str | None, query: Vector, k: int, *, among: Collection[int]
    ) -> list[Hit]:
        if len(among) == 0 or k <= 0:  # `among` may be a numpy array (the scope cache's)
            return []
        vector = normalized(query).reshape(1, -1)
        if len(among) > self._filter_ids:
            nearest = await self._query(tenant_id, vector, k * _OVERSAMPLE, None)
            admitted = [hit for hit, kept in zip(nearest, _isin(nearest, among), strict=True) if kept]
            if len(admitted) >= k:
                return admitted[:k]
        # The filter's ids as plain ints, built only when a filter is sent (a 100k scope's list is
        # not free, and the plain query above answers most large scopes).
        seqs = among.tolist() if isinstance(among, np.ndarray) else [int(seq) for seq in among]
        parts = [seqs[start : start + self._filter_ids] for start in range(0, len(seqs), self._filter_ids)]
        found = await asyncio.gather(
            *(self._query(tenant_id, vector, min(k, len(part)), {"seq": {"$in": part}}) for part in parts)
        )
        return sorted((hit for hits in found for hit in hits), key=lambda hit: -hit.score)[:k]

    async def _query(
        self, tenant_id: str | None, vector: np.ndarray, n: int, where: dict[str, Any] | None
    ) -> list[Hit]:
        found = await self._on(
            tenant_id, "query", query_embeddings=vector, n_results=n, where=where, include=["distances"]
        )
        if found is None:
            return []
        # Cosine distance is 1 - cosine similarity.
        pairs = zip(found["ids"][0], found["distances"][0], strict=True)
        return [Hit(int(i), 1.0 - float(d)) for i, d in pairs]

    async def ids(self, tenant_id: str | None) -> set[int]:
        held: set[int] = set()
        while True:
            page = await self._on(tenant_id, "get", include=[], limit=_BATCH, offset=len(held))
            if page is None:
                return held
            held.update(int(i) for i in page["ids"])
            if len(page["ids"]) < _BATCH:
                return held

    async def purge(self, tenant_id: str | None) -> None:
        """Chroma deletes at once: what SQL no longer holds is deleted now; with nothing left in SQL
        the tenant's collection goes."""
        kept = await self._load(tenant_id)
        if not kept:
            await self.drop(tenant_id)
            return
        await self.remove(tenant_id, (await self.ids(tenant_id)) - set(kept))

    async def drop(self, tenant_id: str | None) -> None:
        from chromadb.errors import NotFoundError

        client = await self._connected()
        self._collections.pop(tenant_id, None)
        with contextlib.suppress(NotFoundError):
            await client.delete_collection(self.collection_name(tenant_id))

    async def close(self) -> None:
        self._collections.clear()
        self._client = None

    # ----------------------------------------------------------------------------------------------

    async def _connected(self) -> Any:
        async with self._connect:
            if self._client is None:
                import chromadb  # the memory-backends extra; only a Chroma deployment needs it
                from chromadb.config import Settings as ChromaSettings

                # No usage reports from a self-hosted gateway to chromadb's telemetry service.
                self._client = await chromadb.AsyncHttpClient(
                    host=self._host, port=self._port, settings=ChromaSettings(anonymized_telemetry=False)
                )
            return self._client

    async def _on(self, tenant_id: str | None, method: str, *, create: bool = False, **args: Any) -> Any:
        """The collection's `method` called with `args`; None when the tenant has no collection and
        `create` is false. A collection another replica deleted (an erasure) is looked up again once."""
        from chromadb.errors import NotFoundError

        for attempt in (1, 2):
            collection = await self._collection(tenant_id, create=create)
            if collection is None:
                return None
            try:
                return await getattr(collection, method)(**args)
            except NotFoundError:
                self._collections.pop(tenant_id, None)
                if attempt == 2:
                    raise
        return None

    async def _collection(self, tenant_id: str | None, *, create: bool) -> Any:
        held = self._collections.get(tenant_id)
        if held is not None:
            return held
        from chromadb.errors import NotFoundError

        client = await self._connected()
        name = self.collection_name(tenant_id)
        if create:
            held = await client.get_or_create_collection(
                name, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
        else:
            try:
                held = await client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        self._collections[tenant_id] = held
        return held


def _isin(hits: list[Hit], among: Collection[int]) -> list[bool]:
    """Whether each hit's row is one `among` admits (a set, or the scope cache's array)."""
    if isinstance(among, np.ndarray):
        return [bool(kept) for kept in np.isin(np.fromiter((hit.seq for hit in hits), np.int64), among)]
    return [hit.seq in among for hit in hits]
