"""Virtual models (docs/orchestration.md, "Automatic model choice").

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.routing.config import VirtualModel


class RoutingFields(BaseModel):
    """Model names answered by a served model chosen per request."""

    # Live-reloadable (RELOADABLE): a reload changes the next request's choice; the task rules'
    # centroids are computed again only when their examples or embedding model change.
    virtual_models: dict[str, VirtualModel] = Field(
        default_factory=dict,
        description="Virtual models by name (e.g. `auto`): `candidates` (served models in order of "
        "preference, with their declared `context_length`, `accepts`, `features`, `latency_ms`), `rules` "
        "(modality, context, features, task, budget; evaluated in order) and `default`. Empty: none.",
    )
