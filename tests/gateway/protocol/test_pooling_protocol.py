"""The pooling family's request schemas and the service's input-token estimate (no engine)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocol import InvalidParam, parse_request
from gateway.protocol.pooling import (
    DetokenizeRequest,
    EmbeddingRequest,
    RerankRequest,
    ScoreRequest,
    TokenizeRequest,
)
from gateway.services.pooling import ENDPOINTS, estimate_input_tokens, unsupported


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "input": "text"},
        {"model": "m", "input": ""},  # vLLM embeds an empty string (OpenAI refuses it)
        {"model": "m", "input": ["a", "b"]},
        {"model": "m", "input": [1, 2, 3]},
        {"model": "m", "input": [[1, 2], [3]]},
        {"input": "no model: the default one"},
        {"model": "m", "input": [{"role": "user", "content": "chat form"}]},
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        {"model": "m", "input": "x", "encoding_format": "base64", "user": "u", "truncate_prompt_tokens": -1},
        {"model": "m", "input": "x", "normalize": True, "priority": 3, "anything": {"vllm": "extra"}},
    ],
)
def test_embeddings_accepts_what_vllm_accepts(body: dict[str, Any]) -> None:
    parse_request(EmbeddingRequest, body)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"model": "m", "input": 3}, "input", "invalid_type"),
        ({"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format", "invalid_value"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions", "integer_below_min_value"),
        ({"model": 5, "input": "x"}, "model", "invalid_type"),
        (
            {"model": "m", "input": "x", "truncate_prompt_tokens": -2},
            "truncate_prompt_tokens",
            "integer_below_min_value",
        ),
    ],
)
def test_embeddings_refusals_name_the_param(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidParam) as caught:
        parse_request(EmbeddingRequest, body)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_score_takes_any_of_vllms_spellings() -> None:
    for first, second in (
        ("queries", "documents"),
        ("queries", "items"),
        ("data_1", "data_2"),
        ("text_1", "text_2"),
    ):
        parse_request(ScoreRequest, {first: "q", second: ["d"]})
    with pytest.raises(InvalidParam) as caught:
        parse_request(ScoreRequest, {"queries": "q"})
    assert caught.value.param == "documents"


def test_every_route_has_a_schema_and_a_task() -> None:
    assert set(ENDPOINTS) == {
        "/v1/embeddings", "/v2/embed", "/classify", "/pooling", "/v1/score", "/score",
        "/v1/rerank", "/rerank", "/v2/rerank", "/tokenize", "/detokenize",
    }  # fmt: skip
    error = unsupported("tantra-tiny", "/v1/embeddings", "embeddings")
    assert error.status == 400 and error.code == "model_not_supported" and error.param == "model"


@pytest.mark.parametrize(
    ("schema", "body", "tokens"),
    [
        (EmbeddingRequest, {"input": "abcdefgh"}, 2 + 2),
        (EmbeddingRequest, {"input": ["abcd", "abcdefgh"]}, 1 + 2 + 2 + 2),
        (EmbeddingRequest, {"input": [5, 6, 7]}, 3 + 2),
        (EmbeddingRequest, {"input": [[5, 6], [7]]}, 2 + 2 + 1 + 2),
        (EmbeddingRequest, {"messages": [{"role": "user", "content": "abcd"}]}, 1 + 2),
        (RerankRequest, {"query": "abcd", "documents": ["abcd", "abcdefgh"]}, 3 + 3 + 4),
        (TokenizeRequest, {"prompt": "abcd"}, 3),
        (DetokenizeRequest, {"tokens": [1, 2, 3, 4]}, 6),
        (EmbeddingRequest, {"input": ""}, 2),
    ],
)
def test_input_token_estimate(schema: Any, body: dict[str, Any], tokens: int) -> None:
    assert estimate_input_tokens(parse_request(schema, body)) == tokens
