"""vLLM's other endpoints through the gateway, against the real engines: rerank, score, pooling,
tokenize and detokenize answer as the engine does directly; an endpoint the model's engine does not
serve is a 400 naming it (and never opens the engine's breaker); every request is in the ledger
with its path and input tokens, priced, and TPM counts input tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from gateway.upstreams.factory import make_upstream
from gateway.upstreams.interface import UpstreamSpec
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine

QUERY = "What is the capital of France?"
DOCUMENTS = ["Paris is the capital of France.", "Berlin is in Germany.", "Bananas are yellow."]
# Fields that differ between two answers to the same request (a fresh id and timestamp each).
_FRESH = {"id", "created"}


def _same(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in _FRESH}


def _post(base: str, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = bearer(key) if key else {}
    return httpx.post(base + path, json=body, headers=headers, timeout=120)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/rerank", {"query": QUERY, "documents": DOCUMENTS}),
    ("/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": 2}),
    ("/v2/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": 1}),
    ("/v1/score", {"text_1": QUERY, "text_2": DOCUMENTS}),
    ("/score", {"queries": QUERY, "documents": DOCUMENTS[:2]}),
    ("/pooling", {"input": DOCUMENTS[:2]}),
    ("/tokenize", {"prompt": QUERY}),
    ("/detokenize", {"tokens": [101, 3000, 2003, 102]}),
]


@pytest.mark.parametrize(("path", "body"), CASES, ids=[path for path, _ in CASES])
def test_same_answer_as_the_engine(
    path: str,
    body: dict[str, Any],
    pooling_gateway_url: str,
    embedding_engine_url: str,
    api_key: str,
    embedding_model: str,
) -> None:
    request = {"model": embedding_model, **body}
    direct = _post(embedding_engine_url, path, request)
    through = _post(pooling_gateway_url, path, request, api_key)
    assert direct.status_code == 200, direct.text
    assert through.status_code == 200, through.text
    expected, got = _same(direct.json()), _same(through.json())
    if path == "/pooling":  # floats of one forward pass each: equal to float32 rounding
        assert [len(item["data"]) for item in got["data"]] == [len(item["data"]) for item in expected["data"]]
        for a, b in zip(got["data"], expected["data"], strict=True):
            assert a["data"] == pytest.approx(b["data"], abs=1e-6)
        got["data"] = expected["data"]
    elif "results" in expected:
        for a, b in zip(got["results"], expected["results"], strict=True):
            assert a["relevance_score"] == pytest.approx(b["relevance_score"], abs=1e-6)
            a["relevance_score"] = b["relevance_score"]
    elif path.endswith("score"):
        for a, b in zip(got["data"], expected["data"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-6)
            a["score"] = b["score"]
    assert got == expected


def test_rerank_orders_by_relevance(pooling_gateway_url: str, api_key: str, embedding_model: str) -> None:
    answer = _post(
        pooling_gateway_url,
        "/v1/rerank",
        {"model": embedding_model, "query": QUERY, "documents": DOCUMENTS},
        api_key,
    ).json()
    assert answer["results"][0]["index"] == 0
    assert answer["usage"]["prompt_tokens"] > 0


def test_tokenize_routes_to_the_chat_models_engine(
    pooling_gateway_url: str, engine_url: str, api_key: str, model: str
) -> None:
    body = {"model": model, "prompt": "Hello there"}
    through = _post(pooling_gateway_url, "/tokenize", body, api_key)
    assert through.status_code == 200, through.text
    assert through.json() == _post(engine_url, "/tokenize", body).json()
    tokens = through.json()["tokens"]
    back = _post(pooling_gateway_url, "/detokenize", {"model": model, "tokens": tokens}, api_key)
    assert back.json() == {"prompt": "Hello there"}


@pytest.mark.parametrize(
    ("which", "path", "body", "task"),
    [
        ("embedding", "/classify", {"input": "x"}, "classification"),
        ("chat", "/v1/embeddings", {"input": "x"}, "embeddings"),
        ("chat", "/v1/rerank", {"query": "q", "documents": ["d"]}, "reranking"),
        ("chat", "/pooling", {"input": "x"}, "pooling"),
    ],
)
def test_unsupported_endpoint_is_400_naming_it(
    which: str,
    path: str,
    body: dict[str, Any],
    task: str,
    pooling_gateway_url: str,
    api_key: str,
    embedding_model: str,
    model: str,
) -> None:
    name = embedding_model if which == "embedding" else model
    error = envelope(_post(pooling_gateway_url, path, {"model": name, **body}, api_key), 400)
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == ("model", "model_not_supported")
    assert error["message"] == f"The model `{name}` does not support {task} ({path})."


def test_unsupported_endpoints_do_not_open_the_breaker(
    pooling_gateway_url: str, api_key: str, model: str, embedding_model: str
) -> None:
    """vLLM's 404 for a route it did not register is an answer, not a failure: after more of them
    than the breaker's threshold (3), both engines still serve."""
    for _ in range(5):
        envelope(_post(pooling_gateway_url, "/v1/embeddings", {"model": model, "input": "x"}, api_key), 400)
        envelope(
            _post(pooling_gateway_url, "/classify", {"model": embedding_model, "input": "x"}, api_key), 400
        )
    chat = _post(
        pooling_gateway_url,
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        api_key,
    )
    assert chat.status_code == 200, chat.text
    assert _post(
        pooling_gateway_url, "/v1/embeddings", {"model": embedding_model, "input": "x"}, api_key
    ).is_success


async def test_deep_health_check_of_an_embedding_engine(
    embedding_engine_url: str, embedding_model: str
) -> None:
    """The deep check's one-token completion is a 404 on a pooling engine: one embedding proves it."""
    async with httpx.AsyncClient(timeout=60) as client:
        upstream = make_upstream(UpstreamSpec("vllm", embedding_engine_url), client)
        assert await upstream.deep_check(None, generate=True) == embedding_model


def test_bad_bodies(pooling_gateway_url: str, api_key: str, embedding_model: str) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/rerank", {"documents": ["d"]}, "query"),
        ("/v1/rerank", {"query": "q"}, "documents"),
        ("/v1/score", {"text_1": "q"}, "documents"),
        ("/tokenize", {}, "prompt"),
        ("/detokenize", {}, "tokens"),
    ]
    for path, body, param in cases:
        error = envelope(_post(pooling_gateway_url, path, {"model": embedding_model, **body}, api_key), 400)
        assert (error["param"], error["code"]) == (param, "missing_required_parameter"), (path, error)
    error = envelope(
        _post(
            pooling_gateway_url,
            "/v1/rerank",
            {"model": embedding_model, "query": "q", "documents": ["d"], "top_n": -1},
            api_key,
        ),
        400,
    )
    assert error["param"] == "top_n"
    error = envelope(
        _post(pooling_gateway_url, "/v1/embeddings", {"model": "no-such", "input": "x"}, api_key), 404
    )
    assert error["code"] == "model_not_found"


def test_every_path_needs_a_key(pooling_gateway_url: str) -> None:
    for path, body in CASES:
        assert envelope(_post(pooling_gateway_url, path, body), 401)["code"] == "invalid_api_key"


@pytest.fixture(scope="module")
def priced_gateway(
    engine_url: str,
    embedding_engine_url: str,
    gateway_settings: Callable[..., Settings],
    embedding_model: str,
) -> Iterator[str]:
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        # A name of the gateway's own for the embedding model, routed to its engine.
        models={"embed": {"upstreams": ["embedding"], "served_name": embedding_model}},
        model_prices={embedding_model: {"prompt": 0.5, "completion": 0}},
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


def test_ledger_rows_and_prices(
    priced_gateway: str, admin: AdminClient, database_url: str, embedding_model: str
) -> None:
    tenant = admin.tenant("pooling-ledger")
    key, record = admin.key(tenant["id"], "pooling-ledger")
    embedded = _post(
        priced_gateway, "/v1/embeddings", {"model": embedding_model, "input": DOCUMENTS}, key
    ).json()
    reranked = _post(
        priced_gateway, "/v1/rerank", {"model": embedding_model, "query": QUERY, "documents": DOCUMENTS}, key
    ).json()
    tokenized = _post(priced_gateway, "/tokenize", {"model": embedding_model, "prompt": QUERY}, key).json()
    rows = sorted(ledger_rows(database_url, record["id"], 3), key=lambda row: row.endpoint)
    assert [row.endpoint for row in rows] == ["/tokenize", "/v1/embeddings", "/v1/rerank"]
    assert [row.prompt_tokens for row in rows] == [
        tokenized["count"],
        embedded["usage"]["prompt_tokens"],
        reranked["usage"]["prompt_tokens"],
    ]
    assert all(row.completion_tokens == 0 and row.status == 200 for row in rows)
    assert all(row.model == embedding_model and row.served_model == embedding_model for row in rows)
    # USD 0.5 per million input tokens: 0.5 micro-dollars a token.
    assert [row.cost_micros for row in rows] == [round(row.prompt_tokens * 0.5) for row in rows]


def test_routes_and_allowed_models(priced_gateway: str, admin: AdminClient, embedding_model: str) -> None:
    """The embedding model's own route (a configured name, its upstream, the engine's name sent on),
    and a key limited to the chat model gets the 404 of a model it may not use."""
    tenant = admin.tenant("pooling-routes")
    key, _ = admin.key(tenant["id"], "pooling-routes")
    routed = _post(priced_gateway, "/v1/embeddings", {"model": "embed", "input": "hello"}, key)
    assert routed.status_code == 200, routed.text
    assert routed.json()["model"] == embedding_model
    models = httpx.get(priced_gateway + "/v1/models", headers=bearer(key)).json()["data"]
    assert {"embed", embedding_model} <= {card["id"] for card in models}
    chat_only, _ = admin.key(tenant["id"], "chat-only", allowed_models=["tantra-tiny"])
    refused = _post(priced_gateway, "/v1/embeddings", {"model": embedding_model, "input": "hello"}, chat_only)
    assert envelope(refused, 404)["code"] == "model_not_found"


def test_tpm_counts_input_tokens(
    pooling_gateway_url: str, admin: AdminClient, database_url: str, embedding_model: str
) -> None:
    tenant = admin.tenant("pooling-tpm")
    key, record = admin.key(tenant["id"], "pooling-tpm", tpm=40)
    small = _post(pooling_gateway_url, "/v1/embeddings", {"model": embedding_model, "input": "hello"}, key)
    assert small.status_code == 200, small.text
    assert int(small.headers["x-ratelimit-limit-tokens"]) == 40
    # About 60 input tokens estimated (240 characters): more than the whole minute allows.
    big = _post(pooling_gateway_url, "/v1/embeddings", {"model": embedding_model, "input": "word " * 48}, key)
    error = envelope(big, 429)
    assert error["code"] == "rate_limit_exceeded"
    rows = ledger_rows(database_url, record["id"], 2)
    assert sorted(row.status for row in rows) == [200, 429]
    assert (
        next(row for row in rows if row.status == 200).prompt_tokens == small.json()["usage"]["prompt_tokens"]
    )
