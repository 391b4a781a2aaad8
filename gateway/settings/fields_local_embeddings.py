"""Local embedding models' setting (`TANTRA_LOCAL_EMBEDDING_MODELS`, docs/embeddings.md "Local
static models"): embedding models the gateway answers /v1/embeddings for itself, in process, with
model2vec's `StaticModel` (microseconds a query instead of a transformer pass on an engine).

A mixin of `Settings` (through the memory mixin, whose query embeddings are what it is for), read
from TANTRA_* exactly as the schema's own fields.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class LocalEmbeddingFields(BaseModel):
    """Static (model2vec) embedding models served by the gateway itself."""

    # JSON in the variable: {"minilm-static": ".cache/checkpoints/minilm-static"}; `python -m engine
    # build-checkpoint --preset minilm-static` (and `make checkpoint`) builds that folder.
    local_embedding_models: dict[str, Path] = Field(
        default_factory=dict,
        description="Embedding models the gateway computes itself, by served name, as JSON: "
        '{"minilm-static": ".cache/checkpoints/minilm-static"} (model2vec StaticModel folders). '
        "Listed in /v1/models and answered by /v1/embeddings like an engine's model; memory "
        "(memory_embedding_model) and vector stores may name them.",
    )
