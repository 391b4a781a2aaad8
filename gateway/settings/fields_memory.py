"""The memory API's settings (docs/memory.md): whether /v1/memories is served, which served models
embed and extract memories, how memories are deduplicated, and where the vector index lives.

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from gateway.memory.graph_url import neo4j_target
from gateway.settings.fields_local_embeddings import LocalEmbeddingFields


class MemoryFields(LocalEmbeddingFields):
    """Memories in mem0's platform API shape, per tenant and end user; their vectors in a
    `VectorIndex` (FAISS, embedded, by default), their text, scope and history in SQL."""

    memory_enabled: bool = Field(
        True, description="Serve the memory API (mem0's platform shape: /v1/memories, /v3/memories/...)."
    )
    # Made by the gateway itself through /v1/embeddings, in process as the caller's key: the
    # embedding tokens are limited and in the ledger as any embedding request's.
    memory_embedding_model: str = Field(
        "all-minilm-l6-v2",
        description="The served embedding model memories and queries are embedded with (`make run` "
        "serves all-MiniLM-L6-v2 under this name; a local_embedding_models name embeds in process, "
        "docs/memory.md).",
    )
    memory_extraction_model: str = Field(
        "",
        description="The served chat model that extracts facts from messages (`infer: true`), with "
        "a JSON schema as response_format. Empty: routing's default model.",
    )
    memory_extraction_max_tokens: int = Field(
        512, ge=16, le=8192, description="The most tokens one fact extraction may write."
    )
    memory_dedupe_threshold: float = Field(
        0.92,
        ge=0.0,
        le=1.0,
        description="Cosine similarity above which an extracted fact updates the existing memory of "
        "the same scope instead of being added (the history records the UPDATE).",
    )
    memory_backend: Literal["faiss", "chroma", "pgvector"] = Field(
        "faiss",
        description="Where memory and vector-store vectors are searched: faiss (embedded, per replica, "
        "its index files in the blob store), chroma (a ChromaDB server, memory_chroma_url) or pgvector "
        "(PostgreSQL with the pgvector extension, memory_pgvector_url); the last two are shared by "
        "every replica. `python -m gateway memory copy` fills a new backend.",
    )
    memory_chroma_url: str = Field(
        "",
        description="The ChromaDB server of memory_backend=chroma, e.g. http://chroma:8000.",
    )
    # May carry a password: a secret, never logged or shown.
    memory_pgvector_url: SecretStr | None = Field(
        None,
        description="The PostgreSQL database of memory_backend=pgvector (postgresql://user:pw@host/db); "
        "the vector extension is created in it if missing.",
    )
    memory_pgvector_hnsw: bool = Field(
        True,
        description="Build pgvector's HNSW index (halfvec_cosine_ops); off: exact scans of a tenant's "
        "rows (for a pgvector build that cannot run HNSW on the host's CPU, docs/memory.md).",
    )
    # Exact search is fast enough below this size (a few ms at 10k 384-d vectors); above it the
    # tenant's index is rebuilt as HNSW (M=32), approximate and logarithmic.
    memory_faiss_hnsw_threshold: int = Field(
        10_000,
        ge=1,
        description="Memories of one tenant above which its FAISS index is HNSW instead of flat.",
    )

    # Memory in chat and responses (docs/memory.md): per key and tenant through the admin API
    # (`memory`), this default where neither says.
    memory_chat_default: bool = Field(
        False,
        description="Memory in chat for keys and tenants without a `memory` setting of their own: a "
        "request naming an end user gets its memories in a system message, and new ones are "
        "extracted after the answer.",
    )
    memory_chat_top_k: int = Field(5, ge=1, le=50, description="The most memories placed in a request.")
    memory_chat_token_budget: int = Field(
        256, ge=16, le=8192, description="The most tokens (estimated) the placed memories may take."
    )
    memory_chat_min_score: float = Field(
        0.2, ge=-1.0, le=1.0, description="The least cosine similarity a memory needs to be placed."
    )
    memory_chat_extract: bool = Field(
        True,
        description="Extract new memories from each chat with memory on (a background job after the "
        "answer); off: chats read memories but never write them (the memory API still adds).",
    )

    # The knowledge graph (docs/memory.md): entities and relations of each memory in an embedded
    # Kuzu database; search merges the relations two hops out of the query's entities.
    memory_graph_enabled: bool = Field(
        False,
        description="Extract entities and relations from each memory added into a knowledge graph "
        "(Kuzu, embedded) and merge graph results into memory search.",
    )
    memory_graph_dir: str = Field(
        "",
        description="The Kuzu database's directory (one writer: one replica's). Empty: "
        "`<blob_dir>/memory-graph`.",
    )
    # May carry a password: a secret, never logged or shown.
    memory_graph_url: SecretStr | None = Field(
        None,
        description="A Neo4j server (5.x) holding the knowledge graph every replica shares, instead of "
        "the embedded Kuzu: bolt:// or neo4j:// (+s, +ssc), credentials and a database in the URL "
        "(neo4j://user:pw@neo4j:7687/db). Needs the memory-backends extra's `neo4j` driver.",
    )
    memory_graph_on_plain_add: bool = Field(
        True,
        description="Extract the graph from memories stored as given (`infer: false`) too, not only "
        "from inferred facts.",
    )
    memory_graph_search: bool = Field(
        True,
        description="Merge graph results into memory search when the request does not say "
        "(`enable_graph`, mem0's flag).",
    )
    memory_graph_hops: int = Field(
        2, ge=1, le=3, description="How many relations out of the query's entities a graph search goes."
    )

    # Compression (docs/memory.md): a scheduled job of the job runner.
    memory_compress_enabled: bool = Field(
        False,
        description="Run the memory-compress job: expired memories removed, and every end user over "
        "the budget brought under it (duplicates collapsed, the oldest merged into summaries).",
    )
    memory_compress_max_per_user: int = Field(
        1000, ge=1, description="The most memories one end user keeps before compression merges the oldest."
    )
    memory_compress_batch: int = Field(
        20, ge=2, le=200, description="The most memories merged into one summary."
    )
    memory_compress_interval_s: float = Field(
        3600.0, gt=0, description="Seconds between memory-compress runs."
    )

    @model_validator(mode="after")
    def _backend_reachable(self) -> MemoryFields:
        if self.memory_backend == "chroma" and not self.memory_chroma_url:
            raise ValueError("memory_backend=chroma needs memory_chroma_url")
        if self.memory_backend == "pgvector" and not self.pgvector_url():
            raise ValueError("memory_backend=pgvector needs memory_pgvector_url")
        if self.graph_url():
            neo4j_target(self.graph_url())  # a URL the driver cannot take fails at start, saying why
        return self

    def pgvector_url(self) -> str:
        return self.memory_pgvector_url.get_secret_value() if self.memory_pgvector_url else ""

    def graph_url(self) -> str:
        return self.memory_graph_url.get_secret_value() if self.memory_graph_url else ""
