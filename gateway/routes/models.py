"""GET /v1/models and GET /v1/models/{model}: the models the caller's key may use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import Principal
from gateway.errors import ModelNotFound
from gateway.protocol import ErrorResponse, ModelCard, ModelList
from gateway.upstreams import ModelCatalog

Authenticate = Callable[[Request], Awaitable[Principal]]


def models_router(
    catalog: ModelCatalog,
    authenticate: Authenticate,
    extra: Callable[[], list[dict[str, Any]]] = list,
) -> APIRouter:
    """`extra`: models served in the gateway itself (speech), listed beside the engine's."""
    router = APIRouter(tags=["models"])

    @router.get("/v1/models", response_model=ModelList, summary="List the models being served")
    async def list_models(request: Request) -> dict[str, Any]:
        principal = await authenticate(request)
        cards = [card for card in [*await catalog.list(), *extra()] if principal.may_use(str(card["id"]))]
        return {"object": "list", "data": cards}

    @router.get(
        "/v1/models/{model:path}",
        response_model=ModelCard,
        summary="Describe one model",
        responses={404: {"model": ErrorResponse, "description": "Unknown model"}},
    )
    async def retrieve_model(model: str, request: Request) -> dict[str, Any]:
        principal = await authenticate(request)
        own = {str(card["id"]): card for card in extra()}
        card = own[model] if model in own else await catalog.resolve(model)
        if not principal.may_use(str(card["id"])):
            # As OpenAI answers for a model the key cannot see.
            raise ModelNotFound(
                f"The model `{model}` does not exist or you do not have access to it.", param="model"
            )
        return card

    return router
