"""Virtual models (docs/orchestration.md, "Automatic model choice"), the resolver that finds the
members of discovered upstreams (docs/deploy.md, "Engine discovery"), and how long a request waits
for one when there is none (docs/deploy.md, "Scale to zero").

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gateway.routing.config import AnyVirtual, EnsembleModel, VirtualModel

# Reloadable (in schema.py's RELOADABLE).
ROUTING_RELOADABLE = frozenset({"virtual_models", "confidence_top_logprobs"})


class RoutingFields(BaseModel):
    """Model names answered by a served model chosen per request."""

    # Live-reloadable (RELOADABLE): a reload changes the next request's choice; the task rules'
    # centroids are computed again only when their examples or embedding model change.
    virtual_models: dict[str, AnyVirtual] = Field(
        default_factory=dict,
        description="Virtual models by name (e.g. `auto`): `candidates` (served models in order of "
        "preference, with their declared `context_length`, `accepts`, `features`, `latency_ms`), `rules` "
        "(modality, context, features, task, budget; evaluated in order) and `default`; or, with `mode: "
        "self_consistency`, the served `model` sampled `k` times and the `extractor` of the answers voted "
        "on; or, with `mode: ensemble`, the served `models` asked at once and how their answers `combine` "
        "(vote, judge, first). Empty: none.",
    )
    # Chat's confidence extension (`tantra: {"confidence": true}`, docs/orchestration.md): the
    # alternatives per token the engine is asked for, over which the entropy is computed.
    confidence_top_logprobs: int = Field(
        5, ge=1, le=20, description="Top log-probabilities per token asked of the engine for a confidence."
    )

    def routing_policy(self) -> dict[str, Any]:
        """These settings' fields of the Policy snapshot (gateway/settings/policy.py)."""
        return {
            "virtual_models": self.virtual_models,
            "confidence_top_logprobs": self.confidence_top_logprobs,
        }

    # Not reloadable: the resolver is built once. Each upstream's own `discovery` is (in `upstreams`).
    discovery_nameserver: str | None = Field(
        None,
        description="The DNS server (`host`, `host:port`) that resolves discovered upstreams' names; "
        "unset: the system's resolv.conf. For tests and custom resolvers.",
    )
    # Not reloadable either: discovery `mode: endpointslices` reaches the API once set up. Unset, the
    # pod's own service account and the API server Kubernetes names in its environment are used.
    discovery_kubernetes_api: str | None = Field(
        None,
        description="The Kubernetes API server EndpointSlice discovery watches (`https://host:port`); "
        "unset: the in-cluster one (KUBERNETES_SERVICE_HOST/PORT).",
    )
    discovery_kubernetes_token_file: str | None = Field(
        None, description="Bearer token file for the Kubernetes API; unset: the pod's service account token."
    )
    discovery_kubernetes_ca_file: str | None = Field(
        None, description="CA bundle of the Kubernetes API; unset: the pod's service account ca.crt."
    )

    # Not reloadable: the hold is built once with the pool (gateway/upstreams/coldstart.py).
    cold_start_wait_s: float = Field(
        0.0,
        ge=0,
        le=600,
        description="Scale to zero: seconds a request waits for a discovered engine of its model to "
        "come up when none is there (counted in tantra_requests_waiting, autoscaling's activation "
        "signal), then 503 with Retry-After. 0: no wait.",
    )

    def virtual_models_problems(self, served: set[str]) -> list[str]:
        """A virtual model named as a configured model (it would hide it), or choosing a virtual one."""
        found = []
        for name, virtual in self.virtual_models.items():
            candidates = _served_by(virtual)
            if name in served:
                found.append(
                    f"virtual_models.{name} (TANTRA_VIRTUAL_MODELS): has the name of a model in `models`"
                )
            for candidate in candidates:
                if candidate in self.virtual_models:
                    found.append(
                        f"virtual_models.{name}.candidates (TANTRA_VIRTUAL_MODELS): {candidate!r} is a "
                        "virtual model; candidates are served models"
                    )
        return found


def _served_by(virtual: AnyVirtual) -> list[str]:
    """The served models a virtual model answers with."""
    if isinstance(virtual, VirtualModel):
        return list(virtual.candidates)
    if isinstance(virtual, EnsembleModel):
        return [*virtual.models, *([virtual.judge.model] if virtual.judge is not None else [])]
    return [virtual.model]
