"""The vector stores API's settings (docs/memory.md, "Vector stores and file search"): whether
/v1/vector_stores and the Responses API's file_search tool are served, which served model embeds
the chunks and the queries, and how ingestion runs on the job runner.

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class VectorStoresFields(BaseModel):
    """Vector stores over the Files API's files: chunks and their embeddings in SQL, one FAISS index
    per store in the blob store; a file's ingestion is a durable job."""

    vector_stores_enabled: bool = Field(
        True,
        description="Serve /v1/vector_stores and the Responses API's file_search tool (needs the Files "
        "API: TANTRA_FILES_ENABLED).",
    )
    # Embedded by the gateway itself through /v1/embeddings (and cut with the model's own /tokenize
    # and /detokenize), in process as the key that added the file or searches: the tokens are
    # limited and in the ledger as any embedding request's.
    vector_stores_embedding_model: str = Field(
        "",
        description="The served embedding model chunks and queries are embedded with. Empty: "
        "TANTRA_MEMORY_EMBEDDING_MODEL.",
    )
    vector_stores_embed_batch: int = Field(
        32, ge=1, le=2048, description="Chunks embedded per /v1/embeddings request during ingestion."
    )
    # Ingestion jobs wait for background slots (docs/jobs.md) while interactive traffic is high.
    vector_stores_concurrency: int = Field(
        2, ge=1, le=64, description="Files ingested at once on one replica (the vector-store-file jobs)."
    )
