"""/v1/embeddings through the gateway, served by a real vLLM engine (all-MiniLM-L6-v2 on the pooling
runner): the OpenAI SDK sync and async, float and base64, every input shape; equality with
sentence-transformers' own output; LangChain's OpenAIEmbeddings and its standard integration tests."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from langchain_core.embeddings import Embeddings
from langchain_openai import OpenAIEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from pydantic import SecretStr

from tests.gateway.helpers import bearer, envelope

pytestmark = pytest.mark.engine

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "Quarterly revenue grew by twelve percent.",
]
DIMENSIONS = 384  # all-MiniLM-L6-v2


@pytest.fixture(scope="module")
def client(pooling_gateway_url: str, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=pooling_gateway_url + "/v1", api_key=api_key, max_retries=0, timeout=120
    ) as client:
        yield client


def _cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_string_and_list_inputs(client: openai.OpenAI, embedding_model: str) -> None:
    one = client.embeddings.create(model=embedding_model, input=TEXTS[0], encoding_format="float")
    assert one.object == "list" and one.model == embedding_model
    assert len(one.data) == 1 and len(one.data[0].embedding) == DIMENSIONS
    assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens
    many = client.embeddings.create(model=embedding_model, input=TEXTS, encoding_format="float")
    assert [item.index for item in many.data] == [0, 1, 2]
    assert _cosine(many.data[0].embedding, one.data[0].embedding) > 0.99999
    # The model normalises: unit vectors; paraphrases are closer than unrelated texts.
    assert np.linalg.norm(many.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    close = _cosine(many.data[0].embedding, many.data[1].embedding)
    assert close > _cosine(many.data[0].embedding, many.data[2].embedding)


def test_token_array_inputs(client: openai.OpenAI, embedding_model: str, pooling_gateway_url: str) -> None:
    tokens = httpx.post(
        pooling_gateway_url + "/tokenize",
        json={"model": embedding_model, "prompt": TEXTS[0]},
        headers=bearer(client.api_key),
        timeout=60,
    ).json()["tokens"]
    text = client.embeddings.create(model=embedding_model, input=TEXTS[0], encoding_format="float")
    ids = client.embeddings.create(model=embedding_model, input=tokens, encoding_format="float")
    assert ids.usage.prompt_tokens == len(tokens) == text.usage.prompt_tokens
    assert _cosine(ids.data[0].embedding, text.data[0].embedding) > 0.99999
    batch = client.embeddings.create(
        model=embedding_model, input=[tokens, tokens[:4]], encoding_format="float"
    )
    assert len(batch.data) == 2 and batch.usage.prompt_tokens == len(tokens) + 4


def test_base64_decodes_to_the_floats(client: openai.OpenAI, embedding_model: str, api_key: str) -> None:
    floats = client.embeddings.create(model=embedding_model, input=TEXTS, encoding_format="float")
    # The SDK asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model=embedding_model, input=TEXTS)
    raw = httpx.post(
        str(client.base_url) + "embeddings",
        json={"model": embedding_model, "input": TEXTS, "encoding_format": "base64"},
        headers=bearer(api_key),
        timeout=60,
    )
    assert raw.status_code == 200, raw.text
    for index, item in enumerate(raw.json()["data"]):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        assert decoded.shape == (DIMENSIONS,)
        assert np.allclose(decoded, floats.data[index].embedding, atol=1e-6)
        assert np.allclose(default.data[index].embedding, floats.data[index].embedding, atol=1e-6)


async def test_async_client(pooling_gateway_url: str, api_key: str, embedding_model: str) -> None:
    async with openai.AsyncOpenAI(
        base_url=pooling_gateway_url + "/v1", api_key=api_key, max_retries=0, timeout=120
    ) as client:
        answer = await client.embeddings.create(model=embedding_model, input=TEXTS)
        floats = await client.embeddings.create(model=embedding_model, input=TEXTS, encoding_format="float")
    assert len(answer.data) == 3 and answer.usage.prompt_tokens > 0
    assert all(
        _cosine(a.embedding, b.embedding) > 0.99999 for a, b in zip(answer.data, floats.data, strict=True)
    )


def test_equal_to_sentence_transformers(
    client: openai.OpenAI, embedding_model: str, embedding_checkpoint: Path
) -> None:
    """The engine's embeddings are the reference implementation's, to 1e-4 cosine (float32 serving)."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(embedding_checkpoint), device="cpu").encode(TEXTS)
    served = client.embeddings.create(model=embedding_model, input=TEXTS, encoding_format="float")
    for expected, item in zip(reference, served.data, strict=True):
        assert 1 - _cosine(expected, item.embedding) < 1e-4


def test_dimensions_refused_by_a_model_without_matryoshka(
    client: openai.OpenAI, embedding_model: str, pooling_gateway_url: str, api_key: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=embedding_model, input="hi", dimensions=128)
    assert caught.value.status_code == 400
    body = {"model": embedding_model, "input": "hi", "dimensions": 128}
    response = httpx.post(pooling_gateway_url + "/v1/embeddings", json=body, headers=bearer(api_key))
    error = envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    assert "dimensions" in error["message"] and "Matryoshka" in error["message"]


def test_bad_bodies_get_openai_envelopes(
    pooling_gateway_url: str, api_key: str, embedding_model: str
) -> None:
    url = pooling_gateway_url + "/v1/embeddings"
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"model": embedding_model}, "input", "missing_required_parameter"),
        (
            {"model": embedding_model, "input": "x", "encoding_format": "hex"},
            "encoding_format",
            "invalid_value",
        ),
        ({"model": embedding_model, "input": "x", "dimensions": 0}, "dimensions", "integer_below_min_value"),
        ({"model": embedding_model, "input": 5}, "input", "invalid_type"),
        (
            {"model": embedding_model, "input": "x", "encoding_format": "bytes"},
            "encoding_format",
            "unsupported_value",
        ),
    ]
    for body, param, code in cases:
        error = envelope(httpx.post(url, json=body, headers=bearer(api_key), timeout=60), 400)
        assert (error["param"], error["code"]) == (param, code), (body, error)
    # vLLM's own refusal (no prompt at all) passes through in OpenAI's envelope.
    error = envelope(
        httpx.post(url, json={"model": embedding_model, "input": []}, headers=bearer(api_key)), 400
    )
    assert error["type"] == "invalid_request_error"


def test_unauthenticated_is_401(pooling_gateway_url: str, embedding_model: str) -> None:
    response = httpx.post(
        pooling_gateway_url + "/v1/embeddings", json={"model": embedding_model, "input": "x"}
    )
    assert envelope(response, 401)["code"] == "invalid_api_key"


def test_models_lists_both(client: openai.OpenAI, embedding_model: str, model: str) -> None:
    names = {card.id for card in client.models.list()}
    assert {embedding_model, model} <= names


def _langchain(pooling_gateway_url: str, api_key: str, model: str) -> OpenAIEmbeddings:
    # check_embedding_ctx_length=False: otherwise LangChain splits texts with tiktoken (OpenAI's
    # cl100k tokenizer, a download) and sends OpenAI's token ids, which mean nothing to this
    # model's vocabulary; vLLM tokenizes the texts itself.
    return OpenAIEmbeddings(
        openai_api_base=pooling_gateway_url + "/v1",
        openai_api_key=SecretStr(api_key),
        model=model,
        check_embedding_ctx_length=False,
        max_retries=0,
    )


def test_langchain_openai_embeddings(
    pooling_gateway_url: str, api_key: str, embedding_model: str, client: openai.OpenAI
) -> None:
    embeddings = _langchain(pooling_gateway_url, api_key, embedding_model)
    documents = embeddings.embed_documents(TEXTS)
    query = embeddings.embed_query(TEXTS[0])
    direct = client.embeddings.create(model=embedding_model, input=TEXTS, encoding_format="float")
    assert len(documents) == 3 and len(query) == DIMENSIONS
    assert _cosine(query, documents[0]) > 0.99999
    assert all(_cosine(a, b.embedding) > 0.99999 for a, b in zip(documents, direct.data, strict=True))


class TestLangChainStandard(EmbeddingsIntegrationTests):
    """LangChain's own standard integration tests of an embeddings class, against the gateway."""

    @property
    def embeddings_class(self) -> type[OpenAIEmbeddings]:
        return OpenAIEmbeddings

    @pytest.fixture
    def model(self, pooling_gateway_url: str, api_key: str, embedding_model: str) -> Embeddings:
        return _langchain(pooling_gateway_url, api_key, embedding_model)
