"""GET /v1/models and GET /v1/models/{model}: the models the caller's key may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Request

from gateway.auth import Principal
from gateway.errors import EngineUnavailable, no_such_model
from gateway.http.client_address import client_address
from gateway.protocol import ErrorResponse, ModelCard, ModelList
from gateway.upstreams import ModelCatalog

# The request's headers and its client address (unknown keys are throttled per address).
Authenticate = Callable[[Mapping[str, str], str | None], Awaitable[Principal]]


class LocalModel(Protocol):
    """Models the gateway serves itself (speech, transcription), listed after the engines' models."""

    def cards(self) -> list[dict[str, Any]]: ...

    def card_for(self, model: str) -> dict[str, Any] | None:
        """The card answering for `model` (a name or an alias), or None."""
        ...


class PrivateModels(Protocol):
    """A tenant's own models (fine-tuned adapters): listed and described to their tenant only."""

    def owns(self, model: str | None) -> bool: ...

    async def cards(self, tenant_id: str | None) -> list[dict[str, Any]]: ...

    async def card_for(self, tenant_id: str | None, model: str) -> dict[str, Any] | None: ...


def models_router(
    catalog: ModelCatalog,
    authenticate: Authenticate,
    local: Sequence[LocalModel] = (),
    private: PrivateModels | None = None,
) -> APIRouter:
    router = APIRouter(tags=["models"])

    @router.get("/v1/models", response_model=ModelList, summary="List the models being served")
    async def list_models(request: Request) -> dict[str, Any]:
        principal = await authenticate(request.headers, client_address(request))
        own = [card for served in local for card in served.cards()]
        try:
            engines = await catalog.list()
        except EngineUnavailable:
            # With no engine reachable, the gateway's own models still serve: they are listed (as
            # vLLM's and LiteLLM's servers always answer 200), and the 503 is kept for a gateway
            # that has nothing to offer.
            if not own:
                raise
            engines = []
        cards = [*engines, *own]
        if private is not None:
            # The engines list every loaded adapter: only the caller's tenant's are shown.
            cards = [c for c in cards if not private.owns(str(c["id"]))]
            cards += await private.cards(principal.tenant_id)
        cards = [card for card in cards if principal.may_use(str(card["id"]))]
        return {"object": "list", "data": cards}

    @router.get(
        "/v1/models/{model:path}",
        response_model=ModelCard,
        summary="Describe one model",
        responses={404: {"model": ErrorResponse, "description": "Unknown model"}},
    )
    async def retrieve_model(model: str, request: Request) -> dict[str, Any]:
        principal = await authenticate(request.headers, client_address(request))
        if private is not None and private.owns(model):
            mine = await private.card_for(principal.tenant_id, model)
            if mine is None:
                raise no_such_model(model)
            return mine
        own = next((card for served in local if (card := served.card_for(model)) is not None), None)
        card = own if own is not None else await catalog.resolve(model)
        if not principal.may_use(str(card["id"])):
            # As OpenAI answers for a model the key cannot see.
            raise no_such_model(model)
        return card

    return router
