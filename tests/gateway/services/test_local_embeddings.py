"""A static embedding model served by the gateway itself (TANTRA_LOCAL_EMBEDDING_MODELS): the real
minilm-static checkpoint, a gateway with no engine running at all, the OpenAI SDK and mem0's
`MemoryClient`. /v1/embeddings in OpenAI's shape (float, base64, token arrays, usage by the model's
tokenizer), its refusals in OpenAI's envelope, /v1/models, the ledger and the limits; and memory
embedding with it end to end."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from model2vec import StaticModel

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_now, ledger_rows
from tests.gateway.memory.fake_models import CHAT, EMBEDDING, FakeModels
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient

MODEL = "minilm-static"
TEXTS = [
    "How do I reset my password?",
    "What are the steps to change my login password?",
    "Quarterly revenue grew by twelve percent.",
]


@pytest.fixture(scope="module")
def served(
    static_embedding_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, AdminClient, str]]:
    """(gateway url, admin client, the store's url): the gateway's engine URL answers nothing."""
    tmp = tmp_path_factory.mktemp("local-embeddings")
    database_url = f"sqlite+aiosqlite:///{tmp / 'store.db'}"
    settings = gateway_settings(
        # Its own store: the session's other gateways would claim this one's memory jobs.
        database_url=database_url,
        local_embedding_models={MODEL: static_embedding_checkpoint},
        memory_embedding_model=MODEL,
        vector_stores_embedding_model=MODEL,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield server.url, admin, database_url
        admin.close()


@pytest.fixture(scope="module")
def key(served: tuple[str, AdminClient, str]) -> tuple[str, str]:
    """(secret, key id) of a key with no limits."""
    _, admin, _ = served
    tenant = admin.tenant("local-embeddings")
    secret, record = admin.key(tenant["id"], "local-embeddings")
    return secret, str(record["id"])


@pytest.fixture(scope="module")
def client(served: tuple[str, AdminClient, str], key: tuple[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served[0] + "/v1", api_key=key[0], max_retries=0, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def reference(static_embedding_checkpoint: Path) -> StaticModel:
    return StaticModel.from_pretrained(static_embedding_checkpoint, max_length=None)


def test_float_vectors_are_model2vecs_and_usage_is_its_token_count(
    client: openai.OpenAI, reference: StaticModel
) -> None:
    answer = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert answer.model == MODEL and [item.index for item in answer.data] == [0, 1, 2]
    vectors = np.array([item.embedding for item in answer.data])
    expected = reference.encode(TEXTS, use_multiprocessing=False)
    assert vectors.shape == (3, reference.dim)
    assert np.allclose(vectors, expected, atol=1e-6)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    tokens = sum(len(ids) for ids in reference.tokenize(TEXTS))
    assert answer.usage.prompt_tokens == tokens == answer.usage.total_tokens


def test_base64_and_token_arrays(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float").data[0].embedding
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    assert np.allclose(client.embeddings.create(model=MODEL, input=TEXTS[0]).data[0].embedding, floats)
    # Asked for, base64 is passed through: little-endian float32, as OpenAI's.
    raw = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="base64").data[0].embedding
    assert isinstance(raw, str)
    assert np.allclose(np.frombuffer(base64.b64decode(raw), "<f4"), floats)
    ids = [2129, 2079, 1045, 25141, 2026, 20786, 1029]  # "how do i reset my password?"
    by_ids = client.embeddings.create(model=MODEL, input=[ids, ids[:3]], encoding_format="float")
    assert np.allclose(by_ids.data[0].embedding, floats, atol=1e-6)
    assert by_ids.usage.prompt_tokens == 10


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": [[1, 2], "mixed", 3]}, "input"),
        ({"input": [999999]}, "input"),
        ({"input": "hello", "dimensions": 64}, "dimensions"),
        ({"messages": [{"role": "user", "content": "hello"}]}, "messages"),
        ({"input": 42}, "input"),
    ],
)
def test_bad_input_gets_openais_envelope(
    served: tuple[str, AdminClient, str], key: tuple[str, str], body: dict[str, Any], param: str
) -> None:
    response = httpx.post(served[0] + "/v1/embeddings", headers=bearer(key[0]), json={"model": MODEL, **body})
    error = envelope(response, 400)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_other_pooling_routes_are_400(served: tuple[str, AdminClient, str], key: tuple[str, str]) -> None:
    score = httpx.post(
        served[0] + "/v1/score",
        headers=bearer(key[0]),
        json={"model": MODEL, "queries": "a", "documents": "b"},
    )
    assert envelope(score, 400)["code"] == "model_not_supported"


def test_beside_an_engine_both_are_listed_and_an_unknown_model_is_404(
    static_embedding_checkpoint: Path, gateway_settings: Callable[..., Settings], admin_key: str
) -> None:
    """Without an engine, no model can be said not to exist (a 503); with one, a name neither it nor
    the gateway serves is OpenAI's 404."""
    models = FakeModels()
    with ThreadedServer(models.app) as engine:
        settings = gateway_settings(
            engine_url=engine.url, local_embedding_models={MODEL: static_embedding_checkpoint}
        )
        with ThreadedServer(create_app(settings)) as gateway:
            admin = AdminClient(gateway.url, admin_key)
            secret, _ = admin.key(admin.tenant("local-beside-engine")["id"])
            admin.close()
            with openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0) as client:
                listed = [card.id for card in client.models.list()]
                assert listed[:2] == [CHAT, EMBEDDING] and MODEL in listed[2:]
                with pytest.raises(openai.NotFoundError) as caught:
                    client.embeddings.create(model="no-such-model", input="hello")
                assert caught.value.code == "model_not_found"
                assert len(client.embeddings.create(model=MODEL, input="hello").data[0].embedding) == 256


def test_the_model_is_described_without_an_engine(client: openai.OpenAI) -> None:
    assert client.models.retrieve(MODEL).owned_by == "tantra"


def test_tokenize_and_detokenize_as_vector_stores_call_them(
    served: tuple[str, AdminClient, str], key: tuple[str, str]
) -> None:
    body = {"model": MODEL, "prompt": "Hello, world", "add_special_tokens": False, "return_token_strs": True}
    tokens = httpx.post(served[0] + "/tokenize", headers=bearer(key[0]), json=body).json()
    assert tokens["token_strs"] == ["hello", ",", "world"] and tokens["count"] == 3
    text = httpx.post(
        served[0] + "/detokenize", headers=bearer(key[0]), json={"model": MODEL, "tokens": tokens["tokens"]}
    ).json()
    assert text == {"prompt": "hello, world"}


def test_admitted_limited_and_in_the_ledger(
    client: openai.OpenAI, served: tuple[str, AdminClient, str]
) -> None:
    url, admin, database_url = served
    tenant = admin.tenant("local-embeddings-limited")
    secret, record = admin.key(tenant["id"], "limited", rpm=1)
    with openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0) as limited:
        first = limited.embeddings.create(model=MODEL, input=TEXTS[:2])
        with pytest.raises(openai.RateLimitError):
            limited.embeddings.create(model=MODEL, input=TEXTS[:2])
    row, refused_row = ledger_rows(database_url, str(record["id"]), 2)
    assert (row.outcome, refused_row.outcome, refused_row.status) == ("completed", "rejected", 429)
    assert row.endpoint == "/v1/embeddings" and row.model == MODEL == row.served_model
    assert row.prompt_tokens == first.usage.prompt_tokens and row.completion_tokens == 0
    refused = httpx.post(url + "/v1/embeddings", json={"model": MODEL, "input": "x"})
    assert envelope(refused, 401)["code"] == "invalid_api_key"


def test_memory_embeds_with_it_without_any_engine(served: tuple[str, AdminClient, str]) -> None:
    url, admin, _ = served
    tenant = admin.tenant("local-embeddings-memory")
    secret, _ = admin.key(tenant["id"], "memory")
    memory = MemoryClient(api_key=secret, host=url)
    tea = memory.add("likes green tea in the morning", user_id="pat", infer=False)["results"][0]["id"]
    memory.add("owns a red bicycle", user_id="pat", infer=False)
    memory.add("works as a nurse in Porto", user_id="pat", infer=False)
    found = memory.search("what does pat drink?", filters={"user_id": "pat"})["results"]
    assert found[0]["id"] == tea
    found = memory.search("which city is pat's job in?", filters={"user_id": "pat"})["results"]
    assert found[0]["memory"] == "works as a nurse in Porto"


def test_a_search_query_is_embedded_directly_its_tokens_in_the_ledger(
    served: tuple[str, AdminClient, str], reference: StaticModel
) -> None:
    """The memory search's query is computed by the static model with no request of the gateway to
    itself (gateway/services/memory_query.py), its tokens still a /v1/embeddings row of the key; a key
    not allowed the model gets the model's 404, as the endpoint answers it."""
    url, admin, database_url = served
    tenant = admin.tenant("local-embeddings-query")
    secret, record = admin.key(tenant["id"], "query")
    memory = MemoryClient(api_key=secret, host=url)
    memory.add("likes green tea in the morning", user_id="pat", infer=False)
    query = "what does pat drink in the morning?"
    assert memory.search(query, filters={"user_id": "pat"})["results"][0]["memory"].startswith("likes green")
    tokens = len(reference.tokenize([query])[0])
    deadline = time.monotonic() + 10
    while True:
        rows = [r for r in ledger_now(database_url, str(record["id"])) if r.endpoint == "/v1/embeddings"]
        if len(rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (row,) = [r for r in rows if r.prompt_tokens == tokens]
    assert (row.model, row.served_model, row.outcome, row.status) == (MODEL, MODEL, "completed", 200)
    assert row.tenant_id == tenant["id"] and "-mem" in row.request_id
    barred, _ = admin.key(tenant["id"], "barred", allowed_models=["some-other-model"])
    refused = httpx.post(
        url + "/v2/memories/search/",
        json={"query": "tea", "filters": {"user_id": "pat"}},
        headers=bearer(barred),
    )
    assert envelope(refused, 404)["code"] == "model_not_found"


def test_a_vector_store_chunks_and_searches_with_it(served: tuple[str, AdminClient, str]) -> None:
    url, admin, _ = served
    secret, _ = admin.key(admin.tenant("local-embeddings-vectors")["id"])
    documents = {
        "tea.txt": "Green tea is brewed with water at eighty degrees for three minutes.",
        "rome.md": "# Rome\n\nThe Colosseum in Rome held fifty thousand spectators.",
        "long.txt": " ".join(f"word{n}" for n in range(300)),
    }
    with openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0, timeout=60) as client:
        store = client.vector_stores.create(name="local")
        for name, text in documents.items():
            file_id = client.files.create(file=(name, text.encode()), purpose="assistants").id
            done = client.vector_stores.files.create_and_poll(
                file_id,
                vector_store_id=store.id,
                chunking_strategy={
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
                },
                poll_interval_ms=50,
            )
            assert done.status == "completed", done.last_error
        best = client.vector_stores.search(store.id, query="how hot should the water be for tea?").data[0]
        assert best.filename == "tea.txt"
        assert (
            client.vector_stores.search(store.id, query="gladiators in the Colosseum").data[0].filename
            == "rome.md"
        )
