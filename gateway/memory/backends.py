"""The `VectorIndex` the settings name (TANTRA_MEMORY_BACKEND): one place that builds FAISS, Chroma or
pgvector for memories and for vector stores alike (docs/memory.md, "Backends")."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from gateway.blobs import BlobStore
from gateway.memory.chroma_index import ChromaIndex
from gateway.memory.faiss_index import FaissIndex
from gateway.memory.index import Loader, VectorIndex
from gateway.memory.pgvector_index import PgvectorIndex
from gateway.settings.fields_memory import MemoryFields

Backend = Literal["faiss", "chroma", "pgvector"]
# What each kind is called in a backend: FAISS's blob prefix, Chroma's collection and pgvector's table.
_NAMES = {"memory": ("memory-index", "memory"), "vector-store": ("vector-store-index", "vector-store")}


def vector_index(
    settings: MemoryFields,
    blobs: BlobStore,
    load: Loader,
    *,
    kind: Literal["memory", "vector-store"] = "memory",
    backend: Backend | None = None,
) -> VectorIndex:
    """The index of `backend` (the settings' by default) for memories or for vector stores."""
    blob_prefix, name = _NAMES[kind]
    chosen = backend or settings.memory_backend
    if chosen == "chroma":
        if not settings.memory_chroma_url:
            raise ValueError("the chroma backend needs memory_chroma_url")
        host, port = chroma_address(settings.memory_chroma_url)
        return ChromaIndex(host, port, load, prefix=name)
    if chosen == "pgvector":
        if not settings.pgvector_url():
            raise ValueError("the pgvector backend needs memory_pgvector_url")
        return PgvectorIndex(settings.pgvector_url(), load, prefix=name, hnsw=settings.memory_pgvector_hnsw)
    return FaissIndex(blobs, load, hnsw_threshold=settings.memory_faiss_hnsw_threshold, prefix=blob_prefix)


def chroma_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "127.0.0.1", parts.port or 8000
