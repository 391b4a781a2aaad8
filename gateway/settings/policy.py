"""What the request path reads of the settings in force, as one typed snapshot.

A request takes `PolicySource.current` once when it arrives and keeps it to its last byte: a live
reload changes the next request, never a running one. The request path imports this module and
`sections` only, never the schema or the loader, so nothing on it can reach the settings machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from adapters.parts import TEXT_ONLY, Modality
from gateway.routing.config import AnyVirtual
from gateway.settings.sections import LimitsConfig, ModelRoute


@dataclass(frozen=True, slots=True)
class Allowance:
    """`count` refusals of one subject per `window_s`, then 429 until the window ends; 0: off."""

    count: int = 0
    window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    max_body_bytes: int = 16 * 1024 * 1024
    # Bodies above this size are screened in a worker process (their JSON values counted against
    # `max_json_nodes`, 400 past it) before the loop parses them; 0: never.
    screen_body_bytes: int = 1024 * 1024
    max_json_nodes: int = 512 * 1024
    # The work a body may ask for before it is validated (400 `array_above_max_length`).
    max_messages: int = 2048
    max_content_parts: int = 4096
    # Refused requests (400, 403, 404, 413, 429) a key and a client address may send per window.
    rejections_per_key: Allowance = Allowance(300)
    rejections_per_address: Allowance = Allowance(0)
    # Unknown keys one client address may present per window before lookups are refused (429).
    auth_failures_per_address: Allowance = Allowance(30)
    # The config file's limits, over the store's.
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    models: Mapping[str, ModelRoute] = field(default_factory=dict)
    # What a model takes when its route does not say (media turned into text otherwise).
    media_default_accepts: tuple[Modality, ...] = tuple(TEXT_ONLY)
    # Prompt characters hashed for prefix-cache affinity; 0 turns affinity off.
    affinity_prefix_chars: int = 256
    failover_enabled: bool = True
    failover_max: int = 2
    # Virtual models (`auto`): a served model chosen per request by rules (docs/orchestration.md).
    virtual_models: Mapping[str, AnyVirtual] = field(default_factory=dict)
    # Top log-probabilities per token asked of the engine for chat's confidence extension.
    confidence_top_logprobs: int = 5

    def chain(self, model: str) -> tuple[str, ...]:
        """`model`, then the fallbacks that may answer for it, in order (as the dispatcher plans)."""
        route = self.models.get(model)
        fallbacks = route.fallbacks if route is not None else ()
        return (model, *(name for name in fallbacks if name != model))

    def accepts(self, model: str) -> tuple[Modality, ...]:
        """The modalities `model` takes as they are (the rest is turned into text). A fine-tuned
        model (`ft:<base>:...`, a LoRA adapter on its base) takes what its base's route says."""
        route = self.models.get(model)
        if route is None and model.startswith("ft:"):
            route = self.models.get(model.split(":", 2)[1])
        if route is not None and route.accepts is not None:
            return tuple(route.accepts)
        return self.media_default_accepts

    def reasoning_budgets(self, model: str) -> Mapping[str, int] | None:
        """The thinking budget per `reasoning_effort` its route sets for `model` (None: unset)."""
        route = self.models.get(model)
        budgets = route.reasoning_budgets if route is not None else None
        return None if budgets is None else {str(effort): tokens for effort, tokens in budgets.items()}


class PolicySource(Protocol):
    @property
    def current(self) -> Policy: ...


class LivePolicy:
    """The policy in force: replaced whole on each reload (`update`), read once per request."""

    def __init__(self, policy: Policy) -> None:
        self.current = policy

    def update(self, policy: Policy) -> None:
        self.current = policy
