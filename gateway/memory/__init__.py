"""Memory's vector search: the `VectorIndex` interface and its FAISS backend (docs/memory.md)."""

from gateway.memory.faiss_index import FaissIndex
from gateway.memory.index import Hit, VectorIndex

__all__ = ["FaissIndex", "Hit", "VectorIndex"]
