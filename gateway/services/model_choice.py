"""Virtual models at the services: which served model answers a request for `auto` (its rules in
gateway/routing/rules.py), named in the response's header, the request's record, span and ledger row,
and the virtual models' cards in /v1/models."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.admission import Ticket
from gateway.errors import APIError, no_such_model
from gateway.limits import PriceBook
from gateway.routing.classifier import TaskClassifier
from gateway.routing.config import AnyVirtual, SelfConsistencyModel, TaskRule, VirtualModel
from gateway.routing.facts import asked_of
from gateway.routing.rules import Choice, Option, choose
from gateway.settings.policy import Policy, PolicySource
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.timeouts import Deadline

CHOICE_HEADER = "x-tantra-model-choice"
_EMBEDDINGS = "/v1/embeddings"
_log = logging.getLogger("tantra.model_choice")


class ModelChoice:
    """Answers for the virtual models of the policy in force (a reload changes the next request)."""

    def __init__(
        self, policy: PolicySource, catalog: ModelCatalog, dispatcher: Dispatcher, prices: PriceBook
    ) -> None:
        self._policy = policy
        self._catalog = catalog
        self._dispatcher = dispatcher
        self._prices = prices
        self.classifier = TaskClassifier(self._embed)
        self._warming: set[asyncio.Task[None]] = set()

    def owns(self, model: str | None) -> bool:
        # The other modes (self-consistency) are services/self_consistency.py's.
        return model is not None and isinstance(self._policy.current.virtual_models.get(model), VirtualModel)

    def warm_soon(self, virtual_models: Mapping[str, AnyVirtual]) -> None:
        """Compute the task rules' centroids in the background (at startup and after a reload that
        changes them), so that no request waits for them; one that fails (the embedding engine not up
        yet) is computed by the first request needing it instead."""
        rules = [
            rule
            for model in virtual_models.values()
            if isinstance(model, VirtualModel)
            for rule in model.rules
            if isinstance(rule, TaskRule)
        ]
        if rules:
            task = asyncio.get_running_loop().create_task(self._warm(rules))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

    async def _warm(self, rules: list[TaskRule]) -> None:
        for rule in rules:
            try:
                # The upstreams' model lists first: the embedding model's engine is found by them.
                await self._catalog.list()
                await self.classifier.centroids(rule)
            except Exception as exc:  # the first request needing them computes them instead
                _log.warning("task centroids over %s not computed yet: %s", rule.embedding_model, exc)

    async def choose(self, ticket: Ticket, payload: dict[str, Any]) -> str:
        """The served model answering `payload` (its `model` a virtual one), set in `payload`; 404
        unless the key may use the virtual model. Only the candidates the key may use are chosen."""
        name = str(payload.get("model"))
        virtual = ticket.policy.virtual_models[name]
        assert isinstance(virtual, VirtualModel)  # owns() said so
        if not ticket.principal.may_use(name):
            raise no_such_model(name)
        with ticket.stage("model_choice"):
            options = await self._options(ticket.policy, virtual, ticket)
            if not options:
                raise no_such_model(name)
            choice = await choose(virtual, options, asked_of(payload), self.classifier.classify)
        _record(ticket, name, choice)
        payload["model"] = choice.model
        return choice.model

    async def _options(self, policy: Policy, virtual: VirtualModel, ticket: Ticket) -> list[Option]:
        options = []
        for model in virtual.preferred():
            if not ticket.principal.may_use(model):
                continue
            try:
                card = await self._catalog.resolve(model)
            except APIError:  # not served now: not a candidate
                continue
            declared = virtual.candidates[model]
            length = declared.context_length or card.get("max_model_len")
            options.append(
                Option(
                    name=model,
                    context_length=length if isinstance(length, int) else None,
                    accepts=frozenset(policy.accepts(model)) | {"text"},
                    features=frozenset(declared.features) if declared.features is not None else None,
                    usd_per_mtok=(
                        self._prices.cost_micros(model, 1_000_000, 0) / 1e6,
                        self._prices.cost_micros(model, 0, 1_000_000) / 1e6,
                    ),
                    latency_ms=declared.latency_ms,
                )
            )
        return options

    async def _embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """The embeddings of `texts` from the served embedding model (the gateway's own call)."""
        plan = self._dispatcher.plan(model)
        body = orjson.dumps({"model": model, "input": texts})
        headers = {"x-request-id": f"tantra-model-choice-{time.monotonic_ns()}"}
        answer, _, _ = await self._dispatcher.complete(
            _EMBEDDINGS, body, headers, plan, Deadline(plan[0].timeouts.total_s)
        )
        data = sorted(orjson.loads(answer)["data"], key=lambda item: item["index"])
        return [item["embedding"] for item in data]

    # As a LocalModel of /v1/models: the virtual models, listed after the served ones.

    def cards(self) -> list[dict[str, Any]]:
        return [self._card(name, virtual) for name, virtual in self._policy.current.virtual_models.items()]

    def card_for(self, model: str) -> dict[str, Any] | None:
        virtual = self._policy.current.virtual_models.get(model)
        return self._card(model, virtual) if virtual is not None else None

    @staticmethod
    def _card(name: str, virtual: AnyVirtual) -> dict[str, Any]:
        described: dict[str, Any]
        if isinstance(virtual, VirtualModel):
            described = {"candidates": list(virtual.candidates), "rules": [r.type for r in virtual.rules]}
        elif isinstance(virtual, SelfConsistencyModel):
            described = {"mode": virtual.mode, "model": virtual.model, "k": virtual.k}
        else:
            described = {"mode": virtual.mode, "models": virtual.models, "combine": virtual.combine}
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "tantra",
            "tantra_virtual": described,
        }


def _record(ticket: Ticket, virtual: str, choice: Choice) -> None:
    """The choice in the response's header, and on the request's span."""
    ticket.headers[CHOICE_HEADER] = choice.header()
    record = ticket.record
    if record is not None and record.tracing.enabled:
        record.span.set_attribute("tantra.model_choice.virtual", virtual)
        record.span.set_attribute("tantra.model_choice.model", choice.model)
        record.span.set_attribute("tantra.model_choice.rule", choice.rule)
