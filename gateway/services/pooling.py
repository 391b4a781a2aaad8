"""vLLM's pooling family and tokenizer endpoints: /v1/embeddings (OpenAI's), /v2/embed (Cohere's),
/classify, /pooling, /v1/score and /score, /v1/rerank, /rerank and /v2/rerank, /tokenize and
/detokenize. Each is admitted, limited, relayed and settled like a chat completion that is never
streamed: the client's own bytes go to a replica serving the model, and the engine's answer comes
back as it sent it.

Token limits count INPUT tokens (the completion is 0): the reservation is estimated from the
inputs (four characters to a token, one per token id, two per text for the model's special
tokens), and the engine's `usage.prompt_tokens` settles it. A model whose engine does not serve the
endpoint (vLLM registers the pooling routes for pooling models only, and the generation routes for
generative ones, answering 404 for the others) is a 400 naming what the model does not support;
such an answer says nothing against the engine's health.

A static embedding model named in TANTRA_LOCAL_EMBEDDING_MODELS is answered in the gateway's own
process instead (gateway/services/local_embeddings.py), after the same admission and reservation,
and settled from its own usage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.admission import Admission, Outcome, Ticket
from gateway.errors import InvalidRequest, ModelNotFound, NotFound
from gateway.http.disconnect import unless_disconnected
from gateway.limits import Estimate
from gateway.protocol.pooling import (
    ClassifyRequest,
    CohereEmbedRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    PoolingRequest,
    PoolingTaskRequest,
    RerankRequest,
    ScoreRequest,
    TokenizeRequest,
)
from gateway.services.forwarding import usage_of
from gateway.services.local_embeddings import LocalEmbeddings
from gateway.services.upstream_call import chose, upstream_headers
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest

_CHARS_PER_TOKEN = 4
# What a tokenizer adds to each text it encodes for a pooling model ([CLS] and [SEP] for BERT).
_SPECIAL_TOKENS_PER_TEXT = 2


@dataclass(frozen=True)
class Endpoint:
    """One route of the family: its body's schema and what a model that lacks it does not support."""

    schema: type[PoolingRequest]
    task: str


ENDPOINTS: dict[str, Endpoint] = {
    "/v1/embeddings": Endpoint(EmbeddingRequest, "embeddings"),
    "/v2/embed": Endpoint(CohereEmbedRequest, "embeddings"),
    "/classify": Endpoint(ClassifyRequest, "classification"),
    "/pooling": Endpoint(PoolingTaskRequest, "pooling"),
    "/v1/score": Endpoint(ScoreRequest, "scoring"),
    "/score": Endpoint(ScoreRequest, "scoring"),
    "/v1/rerank": Endpoint(RerankRequest, "reranking"),
    "/rerank": Endpoint(RerankRequest, "reranking"),
    "/v2/rerank": Endpoint(RerankRequest, "reranking"),
    "/tokenize": Endpoint(TokenizeRequest, "tokenization"),
    "/detokenize": Endpoint(DetokenizeRequest, "detokenization"),
}

# vLLM answers these as raw bytes with the metadata (and usage) in a header, which the gateway's
# relay of whole answers does not carry: refused on purpose, with the format to use instead.
_BINARY_FORMATS = ("bytes", "bytes_only")


class PoolingService:
    """Admits and relays one request of the pooling family; see the module's docstring."""

    def __init__(
        self,
        admission: Admission,
        dispatcher: Dispatcher,
        catalog: ModelCatalog,
        local_models: Mapping[str, Path] | None = None,
    ) -> None:
        self._admission = admission
        self._dispatcher = dispatcher
        self._catalog = catalog
        # Static embedding models answered in process (TANTRA_LOCAL_EMBEDDING_MODELS); listed in
        # /v1/models through `Services.local_models`.
        self.local = LocalEmbeddings(local_models or {})

    async def handle(self, request: Request, path: str) -> Response:
        endpoint = ENDPOINTS[path]
        async with self._admission.enter(request, path) as ticket:
            with ticket.stage("preprocess"):
                body, payload, parsed = await ticket.read_json(endpoint.schema)
                _refuse_binary(parsed)
                local = self.local.knows(parsed.model)
                model = str(parsed.model if local else (await self._catalog.resolve(parsed.model))["id"])
            ticket.use_model(model, stream=False)
            tokens = estimate_input_tokens(parsed)
            await ticket.reserve(Estimate(tokens, 0, tokens))
            if local:
                answer = await self.local.answer(model, path, parsed, payload)
                chose(ticket, "local", model)
            else:
                upstream_request = UpstreamRequest(path, body, payload, model, upstream_headers(ticket))
                answer = await self._relay(request, upstream_request, ticket, endpoint.task)
            ticket.settle(Outcome.COMPLETED, usage=_usage(answer, parsed, tokens))
            return Response(answer, media_type="application/json", headers=ticket.limit_headers)

    async def _relay(
        self, request: Request, upstream_request: UpstreamRequest, ticket: Ticket, task: str
    ) -> bytes:
        """The engine's answer, from a replica serving the model."""
        try:
            answer, upstream, served = await unless_disconnected(
                request.receive, self._dispatcher.answer(upstream_request)
            )
        except ModelNotFound:
            raise
        except NotFound:
            raise unsupported(upstream_request.model, upstream_request.path, task) from None
        chose(ticket, upstream, served)
        return answer


def unsupported(model: str, path: str, task: str) -> InvalidRequest:
    """The 400 for a model whose engine does not serve `path` (vLLM's 404 for a route it did not
    register for that model's runner)."""
    return InvalidRequest(
        f"The model `{model}` does not support {task} ({path}).", param="model", code="model_not_supported"
    )


def _refuse_binary(parsed: PoolingRequest) -> None:
    encoding = getattr(parsed, "encoding_format", None)
    if encoding in _BINARY_FORMATS:
        raise InvalidRequest(
            f"`encoding_format: {encoding}` (a binary answer) is not relayed by this gateway; "
            "use `float` or `base64`.",
            param="encoding_format",
            code="unsupported_value",
        )


def estimate_input_tokens(parsed: PoolingRequest) -> int:
    """The request's input tokens, estimated on the high side before it runs; at least 1."""
    return max(1, sum(_tokens(value) for value in parsed.inputs()))


def _tokens(value: Any) -> int:
    """A text by its characters, a token id as one, lists and chat messages by their parts."""
    if isinstance(value, str):
        return math.ceil(len(value) / _CHARS_PER_TOKEN) + _SPECIAL_TOKENS_PER_TEXT
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        ids = all(isinstance(item, int) and not isinstance(item, bool) for item in value)
        return (
            len(value) + _SPECIAL_TOKENS_PER_TEXT if ids and value else sum(_tokens(item) for item in value)
        )
    if isinstance(value, dict):
        return sum(_tokens(item) for key, item in value.items() if key in ("content", "text"))
    return 0


def _usage(answer: bytes, parsed: PoolingRequest, estimated: int) -> dict[str, Any]:
    """The input tokens the engine counted: its `usage` (embeddings, score, rerank, pooling,
    classify), a tokenization's `count`, Cohere's billed units; else the token ids sent back to
    text, or the estimate."""
    usage = usage_of(answer)
    if usage is not None and isinstance(usage.get("prompt_tokens"), int):
        return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": 0}
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        document = None
    counted = _counted(document)
    if counted is None and isinstance(parsed, DetokenizeRequest) and parsed.tokens is not None:
        counted = len(parsed.tokens)
    return {"prompt_tokens": estimated if counted is None else counted, "completion_tokens": 0}


def _counted(document: Any) -> int | None:
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("count"), int):  # /tokenize
        return int(document["count"])
    billed = (
        (document.get("meta") or {}).get("billed_units") if isinstance(document.get("meta"), dict) else None
    )
    if isinstance(billed, dict) and isinstance(billed.get("input_tokens"), int):  # /v2/embed
        return int(billed["input_tokens"])
    return None
