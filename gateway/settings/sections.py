"""The structured parts of the configuration file: upstreams, models, routing and limit overrides.

They are fields of the one Settings model (so `TANTRA_UPSTREAMS='{...}'` works as well as YAML),
kept here so that schema.py stays a flat list of knobs. Pure data: the request path may import it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

T = TypeVar("T")


class ModelPrice(BaseModel):
    """USD per million tokens, for spend budgets and the ledger's cost column."""

    prompt: float = Field(0.0, ge=0)
    completion: float = Field(0.0, ge=0)


class DiscoveryConfig(BaseModel):
    """An upstream whose members are found in DNS: every address the name resolves to (A and AAAA
    records: a headless Service's ready pods) is its own member (gateway/upstreams/discovery.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dns: str | None = Field(
        None,
        description="The name to resolve (e.g. `engine-headless.tantra.svc.cluster.local`); unset: the "
        "host of the upstream's `url`.",
    )
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="The port each member listens on; unset: the port of the upstream's `url`."
    )
    interval_s: float = Field(
        5.0, gt=0, description="Time between resolutions; members join and leave at this pace."
    )
    mode: Literal["dns", "endpointslices"] = Field(
        "dns",
        description="`dns`: re-resolve the name each `interval_s`; `endpointslices`: watch the Service's "
        "EndpointSlices through the Kubernetes API (gateway/upstreams/endpointslices.py; needs RBAC).",
    )
    service: str | None = Field(
        None,
        description="`endpointslices`: the Service whose slices are watched; unset: the first label of "
        "the upstream's host.",
    )
    namespace: str | None = Field(
        None,
        description="`endpointslices`: the Service's namespace; unset: the second label of the upstream's "
        "host (`svc.ns.svc`), else the gateway pod's own.",
    )


class UpstreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl = Field(description="Base URL of the upstream's OpenAI API, without /v1.")
    # `openai` is any OpenAI-compatible API: OpenAI itself, Together, Groq, ..., or a LiteLLM proxy,
    # which is how hosted non-OpenAI providers (Anthropic, Bedrock, Vertex) are reached. LiteLLM runs
    # as a sidecar rather than as its SDK in the gateway: the SDK's pins (huggingface-hub<2, boto3)
    # would pull the engine stack's environment back a major version, and its per-request work would
    # run in the gateway's process; the gateway speaks OpenAI's HTTP API natively, so such an upstream
    # needs no SDK (docs/resilience.md, External providers).
    kind: Literal["vllm", "openai"] = Field(
        "vllm",
        description="`vllm`: a vLLM server (health, tokenizer, metrics, deep probes); `openai`: any other "
        "OpenAI-compatible API, e.g. a provider or a LiteLLM proxy (docs/resilience.md).",
    )
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the key sent to an `openai` upstream "
        "(the key itself never goes in the file); read when the configuration is (re)loaded. Which "
        "kinds take one is the upstream classes' business (gateway.upstreams.factory).",
    )
    max_outstanding: Annotated[int, Field(ge=0)] | None = Field(
        None,
        description="Requests this upstream may have in flight from this gateway; past it, others are "
        "chosen, and when all are full the gateway sheds with 503. Unset: TANTRA_UPSTREAM_MAX_OUTSTANDING.",
    )
    discovery: DiscoveryConfig | None = Field(
        None,
        description="Find this upstream's members in DNS: each address of the name is its own member "
        "(`<name>@<address>`), added and drained as the records change; unset: `url` is the one member.",
    )

    def api_key(self) -> str | None:
        """The key from the environment variable `api_key_env` names; None when unset or empty."""
        if self.api_key_env is None:
            return None
        return os.environ.get(self.api_key_env) or None


class TimeoutOverride(BaseModel):
    """A model's own timeouts; each unset field keeps the gateway-wide TANTRA_*_TIMEOUT_S value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_s: Annotated[float, Field(gt=0)] | None = None
    ttft_s: Annotated[float, Field(gt=0)] | None = None
    inter_token_s: Annotated[float, Field(gt=0)] | None = None
    total_s: Annotated[float, Field(gt=0)] | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
"""vLLM 0.32's `reasoning_effort` values (OpenAI's, and DeepSeek's `max`)."""


class ModelRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    upstreams: list[str] = Field(default_factory=list, description="Upstream names serving this model.")
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Models to answer from, in order, when none of this model's upstreams can.",
    )
    served_name: str | None = Field(
        None, description="The name the upstreams know the model by; unset: the model's own name."
    )
    timeouts: TimeoutOverride = Field(default_factory=TimeoutOverride)
    accepts: list[Literal["text", "image", "video", "audio"]] | None = Field(
        None,
        description="What the model takes itself; other media parts become derived text "
        "(unset: TANTRA_MEDIA_DEFAULT_ACCEPTS).",
    )
    # docs/orchestration.md, "Reasoning": a chat request's `reasoning_effort` as vLLM's thinking
    # budget (the engine needs a reasoning parser, or vLLM refuses `thinking_token_budget`).
    reasoning_budgets: dict[ReasoningEffort, Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="The thinking_token_budget sent for each reasoning_effort (`none` and `minimal` "
        "also set the template's enable_thinking to false); unset: the effort goes to vLLM as sent.",
    )


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_model: str | None = Field(
        None, description="The model readiness requires; unset: whatever the engines serve first."
    )


class LimitOverride(BaseModel):
    """Limits set in the file; each set field replaces the store's value for that field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_models: tuple[str, ...] | None = None
    rpm: Annotated[int, Field(ge=1)] | None = None
    tpm: Annotated[int, Field(ge=1)] | None = None
    audio_spm: Annotated[int, Field(ge=1)] | None = None
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    budget_tokens: Annotated[int, Field(ge=0)] | None = None
    budget_usd: Annotated[float, Field(ge=0)] | None = None
    budget_period: Literal["day", "month"] | None = None

    def apply(self, limits: T, *, only_unset: bool) -> T:
        """`limits` (the store's frozen Limits dataclass) with this override's fields applied;
        `only_unset` fills only what the store left unlimited (the defaults' meaning)."""
        changes: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None or not hasattr(limits, name):
                continue
            if only_unset and getattr(limits, name) is not None and name != "budget_period":
                continue
            changes[name] = value
        return dataclasses.replace(limits, **changes) if changes else limits  # type: ignore[type-var]


class LimitsConfig(BaseModel):
    """Limits from the file, on top of the store's: defaults for every key or tenant that has none,
    and overrides for one key or tenant by id. A reload applies to the next request at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_defaults: LimitOverride = Field(default_factory=LimitOverride)
    tenant_defaults: LimitOverride = Field(default_factory=LimitOverride)
    keys: dict[str, LimitOverride] = Field(default_factory=dict, description="By key id.")
    tenants: dict[str, LimitOverride] = Field(default_factory=dict, description="By tenant id.")

    def for_key(self, key_id: str | None, limits: T) -> T:
        limits = self.key_defaults.apply(limits, only_unset=True)
        override = self.keys.get(key_id) if key_id else None
        return override.apply(limits, only_unset=False) if override else limits

    def for_tenant(self, tenant_id: str | None, limits: T) -> T:
        limits = self.tenant_defaults.apply(limits, only_unset=True)
        override = self.tenants.get(tenant_id) if tenant_id else None
        return override.apply(limits, only_unset=False) if override else limits

    @property
    def empty(self) -> bool:
        defaults = self.key_defaults.model_fields_set | self.tenant_defaults.model_fields_set
        return not (self.keys or self.tenants or defaults)


def cross_check(
    upstreams: dict[str, UpstreamConfig], models: dict[str, ModelRoute], routing: RoutingConfig
) -> list[tuple[str, str]]:
    """Problems that no single field shows: (setting name, message), all of them at once."""
    problems: list[tuple[str, str]] = []
    for model, route in models.items():
        for name in route.upstreams:
            if name not in upstreams:
                problems.append((f"models.{model}.upstreams", f"names unknown upstream {name!r}"))
        for fallback in route.fallbacks:
            if fallback not in models:
                problems.append((f"models.{model}.fallbacks", f"names unknown model {fallback!r}"))
    for name, upstream in upstreams.items():
        if upstream.api_key_env and upstream.api_key() is None:
            problems.append(
                (f"upstreams.{name}.api_key_env", f"environment variable {upstream.api_key_env} is not set")
            )
    if routing.default_model and models and routing.default_model not in models:
        problems.append(("routing.default_model", f"{routing.default_model!r} is not among `models`"))
    return problems
