"""The one interface every memory vector backend implements (FAISS now; Chroma and pgvector later).

Vectors are kept per tenant, keyed by the memory's SQL row number (`seq`). The text, scope,
metadata and history live in SQL (gateway/store/memories.py); a search is given the row numbers its
scope allows (`among`, read from SQL), so a backend never decides who may see what: a search can
only return a vector the caller's tenant, user, agent and run filters already admitted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
# Every vector of a tenant by row number, read from SQL: what a lost or stale index is rebuilt from.
Loader = Callable[[str | None], Awaitable[Mapping[int, Vector]]]


@dataclass(frozen=True)
class Hit:
    seq: int
    score: float  # cosine similarity, 1 is the same direction


class VectorIndex(Protocol):
    async def add(self, tenant_id: str | None, vectors: Mapping[int, Vector]) -> None:
        """Add (or replace) the vectors of these row numbers."""
        ...

    async def remove(self, tenant_id: str | None, seqs: Collection[int]) -> None:
        """Forget these row numbers (unknown ones are not an error)."""
        ...

    async def search(
        self, tenant_id: str | None, query: Vector, k: int, *, among: Collection[int]
    ) -> list[Hit]:
        """The `k` nearest of the row numbers `among`, best first."""
        ...

    async def ids(self, tenant_id: str | None) -> set[int]:
        """Every row number the tenant's index holds (the GDPR sweep's look into the index)."""
        ...

    async def purge(self, tenant_id: str | None) -> None:
        """Rebuild the tenant's index from SQL now, in memory and in its saved file (an erasure: no
        removed vector may wait for the next write, as HNSW's removals do); with no vector left in
        SQL, the index and its file are deleted."""
        ...

    async def close(self) -> None: ...


def normalized(vector: Vector) -> Vector:
    """Unit length, float32: inner product is then cosine similarity."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def from_bytes(data: bytes) -> Vector:
    return np.frombuffer(data, dtype=np.float32)
