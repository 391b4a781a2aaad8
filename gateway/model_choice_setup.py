"""Virtual models' wiring (docs/orchestration.md, "Automatic model choice"): one `ModelChoice`,
reading the live policy's `virtual_models`, handed to chat, completions and the Responses API; and
`SelfConsistency` for the self-consistency ones, handed to chat ("Self-consistency")."""

from __future__ import annotations

from typing import Protocol

from gateway.limits import PriceBook
from gateway.services.inference import InferenceService
from gateway.services.model_choice import ModelChoice
from gateway.services.responses import ResponsesService
from gateway.services.self_consistency import SelfConsistency
from gateway.settings.policy import PolicySource
from gateway.settings.reload import LiveConfig
from gateway.settings.schema import Settings
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher


class ChoosingServices(Protocol):
    inference: InferenceService
    responses: ResponsesService


def wire_model_choice(
    services: ChoosingServices,
    policy: PolicySource,
    catalog: ModelCatalog,
    dispatcher: Dispatcher,
    prices: PriceBook,
    live: LiveConfig[Settings],
) -> ModelChoice:
    """The chooser, handed to the services; a reload that changes the virtual models computes their
    task centroids at once (`Components.start` does at startup)."""
    choice = ModelChoice(policy, catalog, dispatcher, prices)

    def reloaded(old: Settings, new: Settings) -> None:
        if new.virtual_models != old.virtual_models:
            choice.warm_soon(new.virtual_models)

    live.subscribe(reloaded)
    services.inference.chooser = choice
    services.responses.chooser = choice
    # Self-consistency virtual models (chat completions only).
    services.inference.voting = SelfConsistency(policy, dispatcher)
    return choice
