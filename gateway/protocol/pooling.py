"""vLLM's pooling family and tokenizer endpoints: OpenAI's /v1/embeddings, and the rerank, score,
classify, pooling, tokenize and detokenize bodies of vLLM 0.32's OpenAI server.

Every model is open: what the gateway does not read (vLLM's extras, Cohere's and Jina's keys) is
forwarded as the client wrote it, and the engine judges it. Typed here is what OpenAI (for
embeddings) or vLLM validate and the gateway reads: the model, the inputs (their tokens are
estimated before the request runs), `encoding_format` and `dimensions`, and `top_n`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StrictStr

from gateway.protocol.common import InvalidParam, Open

# OpenAI: a string, a list of strings, a token array, or a list of token arrays. vLLM also takes
# a chat conversation (a list of messages, or a list of them) in `input`: objects pass here.
TokenIds = list[StrictInt]
EmbeddingInput = StrictStr | list[StrictStr] | TokenIds | list[TokenIds] | list[dict[str, Any]] | list[Any]


class PoolingRequest(Open):
    """What every pooling body shares (vLLM's `PoolingBasicRequestMixin`): `model` is optional,
    as vLLM has it (the engine's one model; at the gateway, the default model)."""

    model: StrictStr | None = None
    user: StrictStr | None = None
    truncate_prompt_tokens: Annotated[int, Field(ge=-1)] | None = None

    # The fields whose text or token ids are the request's input, for the token estimate.
    _inputs: tuple[str, ...] = ()
    _required: tuple[tuple[str, ...], ...] = ()

    def inputs(self) -> list[Any]:
        """The values the engine will tokenize (those the request carries)."""
        return [getattr(self, name, None) for name in self._inputs if getattr(self, name, None) is not None]

    def check(self) -> None:
        """One field of each required group must be present (vLLM's union of request shapes)."""
        for group in self._required:
            if not any(getattr(self, name, None) is not None for name in group):
                raise InvalidParam(
                    group[0], f"Missing required parameter: '{group[0]}'.", "missing_required_parameter"
                )


class EmbeddingRequest(PoolingRequest):
    """POST /v1/embeddings: OpenAI's body; vLLM's chat form (`messages`) too."""

    input: EmbeddingInput | None = None
    messages: list[Any] | None = None
    encoding_format: Literal["float", "base64", "bytes", "bytes_only"] = "float"
    # OpenAI: at least 1; a model without Matryoshka support refuses any value (the engine says so).
    dimensions: Annotated[int, Field(ge=1)] | None = None
    embed_dtype: Literal["float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2"] | None = None
    endianness: Literal["native", "big", "little"] | None = None

    _inputs = ("input", "messages")
    _required = (("input", "messages"),)


class ClassifyRequest(EmbeddingRequest):
    """POST /classify: the same inputs as embeddings."""


class PoolingTaskRequest(EmbeddingRequest):
    """POST /pooling: the same inputs, the model's raw pooled output."""


class CohereEmbedRequest(PoolingRequest):
    """POST /v2/embed: Cohere's embed body as vLLM takes it."""

    texts: list[StrictStr] | None = None
    images: list[Any] | None = None
    inputs_: list[Any] | None = Field(None, alias="inputs")

    _inputs = ("texts", "inputs_")
    _required = (("texts", "images", "inputs_"),)


class ScoreRequest(PoolingRequest):
    """POST /v1/score and /score: pairs to score, in any of vLLM's four spellings."""

    queries: Any = None
    documents: Any = None
    items: Any = None
    data_1: Any = None
    data_2: Any = None
    text_1: Any = None
    text_2: Any = None

    _inputs = ("queries", "documents", "items", "data_1", "data_2", "text_1", "text_2")
    _required = (("queries", "data_1", "text_1"), ("documents", "items", "data_2", "text_2"))


class RerankRequest(PoolingRequest):
    """POST /v1/rerank, /rerank and /v2/rerank: Cohere's and Jina's shape, as vLLM takes it."""

    query: Any = None
    documents: Any = None
    top_n: Annotated[int, Field(ge=0)] | None = None

    _inputs = ("query", "documents")
    _required = (("query",), ("documents",))


class TokenizeRequest(PoolingRequest):
    """POST /tokenize: a completion prompt or a chat conversation."""

    prompt: StrictStr | None = None
    messages: list[Any] | None = None

    _inputs = ("prompt", "messages")
    _required = (("prompt", "messages"),)


class DetokenizeRequest(PoolingRequest):
    """POST /detokenize: token ids back to text."""

    tokens: TokenIds | None = None

    _inputs = ("tokens",)
    _required = (("tokens",),)
