"""Virtual models (docs/orchestration.md, "Automatic model choice"), and the resolver that finds
the members of discovered upstreams (docs/deploy.md, "Engine discovery").

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

    # Not reloadable: the resolver is built once. Each upstream's own `discovery` is (in `upstreams`).
    discovery_nameserver: str | None = Field(
        None,
        description="The DNS server (`host`, `host:port`) that resolves discovered upstreams' names; "
        "unset: the system's resolv.conf. For tests and custom resolvers.",
    )

    def virtual_models_problems(self, served: set[str]) -> list[str]:
        """A virtual model named as a configured model (it would hide it), or choosing a virtual one."""
        found = []
        for name, virtual in self.virtual_models.items():
            if name in served:
                found.append(
                    f"virtual_models.{name} (TANTRA_VIRTUAL_MODELS): has the name of a model in `models`"
                )
            for candidate in virtual.candidates:
                if candidate in self.virtual_models:
                    found.append(
                        f"virtual_models.{name}.candidates (TANTRA_VIRTUAL_MODELS): {candidate!r} is a "
                        "virtual model; candidates are served models"
                    )
        return found
