"""Embedding models the gateway computes itself (docs/embeddings.md, "Local static models").

A model2vec `StaticModel` (a table of one vector per token, `python -m engine build-checkpoint
--preset minilm-static`) embeds a text as the normalised mean of its tokens' rows: a tokenizer call
and a numpy mean, about 0.1 ms for a query on this project's 2-core host against 37-48 ms for the
MiniLM engine's transformer pass. So the gateway answers /v1/embeddings for the models named in
`TANTRA_LOCAL_EMBEDDING_MODELS` in its own process, after the same admission, limits and ledger as
an engine's model (gateway/services/pooling.py), and /tokenize and /detokenize with the model's
tokenizer, so that vector stores (which chunk by the embedding model's tokens) can name it too.

The answer is OpenAI's: `float` or `base64` vectors, usage counted with the model's own tokenizer
(no special tokens: a static model adds none). A static model's width is fixed, so `dimensions` is
refused as OpenAI refuses it for a model that cannot change its dimensions. Chat-shaped input
(`messages`) is refused: there is no chat template.

model2vec (and the tokenizer it loads) is imported on a model's first use, in a worker thread, never
at the gateway's start.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import EngineUnavailable, InvalidRequest
from gateway.protocol.pooling import DetokenizeRequest, EmbeddingRequest, PoolingRequest, TokenizeRequest

_log = logging.getLogger("tantra.embeddings")

# OpenAI's cap on the inputs of one request.
_MAX_INPUTS = 2048
# Up to this many tokens a request's vectors are computed on the event loop (a row lookup and a
# mean: ~0.1 ms for a query, ~2 ms for 8k tokens, measured); a larger batch (a vector store's chunks)
# goes to a worker thread so that it does not hold the other requests up.
_INLINE_TOKENS = 8192
# What /tokenize reports as the context of a model that has none (model2vec's own `seq_length`).
_NO_CONTEXT_LIMIT = 1_000_000


class LocalEmbeddings:
    """The static models by served name; each loaded on first use and kept."""

    def __init__(self, models: Mapping[str, Path]) -> None:
        self._paths = {name: Path(path) for name, path in models.items()}
        self._models: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._created = int(time.time())

    def knows(self, model: str | None) -> bool:
        return model is not None and model in self._paths

    def cards(self) -> list[dict[str, Any]]:
        """The local models as /v1/models lists them, after the engines' models."""
        return [
            {"id": name, "object": "model", "created": self._created, "owned_by": "tantra"}
            for name in self._paths
        ]

    def card_for(self, model: str) -> dict[str, Any] | None:
        return next((card for card in self.cards() if card["id"] == model), None)

    async def answer(self, model: str, path: str, parsed: PoolingRequest, payload: dict[str, Any]) -> bytes:
        """The endpoint's answer for a local model, in the engine's shape; 400 for an endpoint a
        static model has no answer for (score, rerank, classify, pooling, Cohere's embed)."""
        static = await self._load(model)
        if isinstance(parsed, EmbeddingRequest) and path == "/v1/embeddings":
            return await _embeddings(static, model, parsed)
        if isinstance(parsed, TokenizeRequest):
            return _tokenized(static, parsed, payload)
        if isinstance(parsed, DetokenizeRequest):
            return orjson.dumps({"prompt": static.tokenizer.decode(parsed.tokens or [])})
        raise InvalidRequest(
            f"The model `{model}` is a static embedding model; it serves /v1/embeddings, /tokenize "
            f"and /detokenize, not {path}.",
            param="model",
            code="model_not_supported",
        )

    async def vectors(self, model: str, texts: list[str]) -> tuple[Any, int]:
        """The texts' unit vectors (float32 rows) and their tokens, computed with no request around
        them: a memory search's query (gateway/services/memory_query.py), whose caller writes the
        tokens to the ledger itself. The same vectors and count as /v1/embeddings answers."""
        static = await self._load(model)
        ids = _token_ids(static, list(texts), None)
        return _vectors(static.embedding, ids), sum(len(row) for row in ids)

    async def _load(self, model: str) -> Any:
        loaded = self._models.get(model)
        if loaded is not None:
            return loaded
        async with self._lock:
            if model not in self._models:
                self._models[model] = await asyncio.to_thread(_load_static, model, self._paths[model])
        return self._models[model]


def _load_static(name: str, folder: Path) -> Any:
    """The StaticModel in `folder`, untruncated (a long chunk is the mean of all its tokens). A
    missing folder is refused here: model2vec would take the path for a Hugging Face repo name."""
    if not (folder / "model.safetensors").is_file():
        _log.error("local embedding model %s: no model2vec model in %s", name, folder)
        raise EngineUnavailable(
            f"The local embedding model `{name}` cannot be loaded; see the gateway's log."
        )
    from model2vec import StaticModel

    return StaticModel.from_pretrained(folder, max_length=None)


async def _embeddings(static: Any, model: str, parsed: EmbeddingRequest) -> bytes:
    if parsed.dimensions is not None:
        raise InvalidRequest(
            f"The model `{model}` does not support specifying dimensions (its vectors have {static.dim}).",
            param="dimensions",
        )
    ids = _token_ids(static, _inputs(parsed), parsed.truncate_prompt_tokens)
    tokens = sum(len(row) for row in ids)
    if tokens <= _INLINE_TOKENS:
        vectors = _vectors(static.embedding, ids)
    else:
        vectors = await asyncio.to_thread(_vectors, static.embedding, ids)
    as_base64 = parsed.encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector,
        }
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    document = {"object": "list", "data": data, "model": model, "usage": usage}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def _inputs(parsed: EmbeddingRequest) -> list[str | list[int]]:
    """The request's inputs, each a text or a token array, as OpenAI takes them."""
    if parsed.messages is not None:
        raise InvalidRequest(
            "A static embedding model takes `input` (texts or token arrays), not `messages`.",
            param="messages",
        )
    value = parsed.input
    # A string, or one token array, is one input; any other list is a list of inputs.
    single = isinstance(value, str) or (isinstance(value, list) and value and all(map(_is_id, value)))
    items: list[Any] = [value] if single else list(value or [])
    if not items:
        raise InvalidRequest("`input` must not be empty.", param="input")
    if len(items) > _MAX_INPUTS:
        raise InvalidRequest(f"`input` may hold at most {_MAX_INPUTS} items.", param="input")
    for item in items:
        if not (
            (isinstance(item, str) and item)
            or (isinstance(item, list) and item and all(_is_id(i) for i in item))
        ):
            raise InvalidRequest(
                "Each `input` item must be a non-empty string or a non-empty array of token ids.",
                param="input",
            )
    return items


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _token_ids(static: Any, items: list[str | list[int]], truncate: int | None) -> list[list[int]]:
    """Each input's token ids: texts by the model's tokenizer (no special tokens, unknown pieces
    dropped, as model2vec encodes), token arrays checked against the vocabulary; cut to the first
    `truncate` tokens when it is positive (-1, the whole context, is the whole input here)."""
    texts = [item for item in items if isinstance(item, str)]
    encoded = iter(static.tokenize(texts)) if texts else iter(())
    vocabulary = len(static.embedding)
    rows: list[list[int]] = []
    for item in items:
        if isinstance(item, str):
            rows.append(next(encoded))
            continue
        if any(i < 0 or i >= vocabulary for i in item):
            raise InvalidRequest(f"Token ids must be between 0 and {vocabulary - 1}.", param="input")
        rows.append(list(item))
    if truncate is not None and truncate > 0:
        rows = [row[:truncate] for row in rows]
    return rows


def _vectors(table: Any, ids: list[list[int]]) -> Any:
    """model2vec's encoding of a plain table: each input's token rows averaged, then normalised
    (an input with no known token is the zero vector)."""
    import numpy as np

    out = np.zeros((len(ids), table.shape[1]), dtype=np.float32)
    for index, row in enumerate(ids):
        if row:
            out[index] = table[np.asarray(row, dtype=np.int64)].mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def _tokenized(static: Any, parsed: TokenizeRequest, payload: dict[str, Any]) -> bytes:
    """vLLM's /tokenize answer for a prompt (what vector stores chunk with)."""
    if parsed.prompt is None:
        raise InvalidRequest(
            "A static embedding model tokenizes a `prompt`, not `messages`.", param="messages"
        )
    special = payload.get("add_special_tokens", True) is not False
    encoding = static.tokenizer.encode(parsed.prompt, add_special_tokens=special)
    strs = list(encoding.tokens) if payload.get("return_token_strs") else None
    return orjson.dumps(
        {
            "count": len(encoding.ids),
            "max_model_len": _NO_CONTEXT_LIMIT,
            "tokens": list(encoding.ids),
            "token_strs": strs,
        }
    )
