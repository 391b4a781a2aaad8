"""POST /v1/embeddings and vLLM's other pooling and tokenizer endpoints: /v2/embed, /classify,
/pooling, /v1/score, /score, /v1/rerank, /rerank, /v2/rerank, /tokenize, /detokenize."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.protocol import ErrorResponse
from gateway.services.pooling import ENDPOINTS, PoolingService

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid request, or a model that does not serve this endpoint (`code`: model_not_supported).",
        401: "Missing, wrong, revoked or expired API key (`code`: invalid_api_key).",
        404: "Unknown model, or one the key may not use (`code`: model_not_found).",
        413: "Request body too large.",
        429: "Over a rate limit (input tokens count against TPM) or a budget.",
        503: "No engine serving the model is available.",
        504: "The engine did not answer in time.",
    }.items()
}
_SUMMARIES = {
    "/v1/embeddings": "Create embeddings (OpenAI's API)",
    "/v2/embed": "Create embeddings (Cohere's API, as vLLM serves it)",
    "/classify": "Classify texts (vLLM)",
    "/pooling": "The model's pooled hidden states (vLLM)",
    "/v1/score": "Score text pairs (vLLM)",
    "/score": "Score text pairs (vLLM)",
    "/v1/rerank": "Rerank documents against a query (Jina/Cohere shape, as vLLM serves it)",
    "/rerank": "Rerank documents against a query (Jina/Cohere shape, as vLLM serves it)",
    "/v2/rerank": "Rerank documents against a query (Cohere v2 shape, as vLLM serves it)",
    "/tokenize": "Tokenize a prompt or a chat with the model's tokenizer (vLLM)",
    "/detokenize": "Token ids back to text (vLLM)",
}


def pooling_router(service: PoolingService) -> APIRouter:
    router = APIRouter(tags=["pooling"], responses=_ERRORS)
    for path, endpoint in ENDPOINTS.items():
        router.add_api_route(
            path,
            _handler(service, path),
            methods=["POST"],
            summary=_SUMMARIES[path],
            response_model=None,
            response_class=Response,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": endpoint.schema.model_json_schema(by_alias=True)}
                    },
                }
            },
            name=f"pooling{path.replace('/', '_')}",
        )
    return router


def _handler(service: PoolingService, path: str) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await service.handle(request, path)

    return handle
