"""GET /v1/models and GET /v1/models/{model}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.protocol import ErrorResponse, ModelCard, ModelList
from gateway.upstreams import ModelCatalog


def models_router(catalog: ModelCatalog) -> APIRouter:
    router = APIRouter(tags=["models"])

    @router.get("/v1/models", response_model=ModelList, summary="List the models being served")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": await catalog.list()}

    @router.get(
        "/v1/models/{model:path}",
        response_model=ModelCard,
        summary="Describe one model",
        responses={404: {"model": ErrorResponse, "description": "Unknown model"}},
    )
    async def retrieve_model(model: str) -> dict[str, Any]:
        return await catalog.resolve(model)

    return router
