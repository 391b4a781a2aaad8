"""Virtual models' wiring (docs/orchestration.md, "Automatic model choice"): one `ModelChoice`,
reading the live policy's `virtual_models`, handed to chat, completions and the Responses API."""

from __future__ import annotations

from typing import Protocol

from gateway.limits import PriceBook
from gateway.services.inference import InferenceService
from gateway.services.model_choice import ModelChoice
from gateway.services.responses import ResponsesService
from gateway.settings.policy import PolicySource
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
) -> ModelChoice:
    choice = ModelChoice(policy, catalog, dispatcher, prices)
    services.inference.chooser = choice
    services.responses.chooser = choice
    return choice
