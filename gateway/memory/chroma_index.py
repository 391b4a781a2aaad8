"""ChromaDB (its own server, reached over HTTP) behind `VectorIndex`: a memory backend replicas share.

One collection per tenant (per vector store for the vector stores API), cosine space; each vector's
Chroma id is its SQL row number and its metadata carries that number (`seq`) so that a search's scope
is a `where` filter Chroma applies on the server: the rows the caller's tenant, user, agent and run
admit (`among`, read from SQL) are the only ones a query can return, and another tenant's rows are
in another collection. The text, scope and history stay in SQL as for FAISS.

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


class ChromaIndex:
    def __init__(self, host: str, port: int, load: Loader, *, prefix: str = "memory") -> None:
        self._host, self._port = host, port
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
        found = await self._on(
            tenant_id,
            "query",
            query_embeddings=normalized(query).reshape(1, -1),
            n_results=min(k, len(among)),
            where={"seq": {"$in": [int(seq) for seq in among]}},
            include=["distances"],
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
