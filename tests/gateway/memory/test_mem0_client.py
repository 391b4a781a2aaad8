"""mem0's own `MemoryClient`, unchanged, against the gateway with the real engines: the tiny chat model
extracts facts (guided JSON), MiniLM embeds them (both through the gateway's own endpoints, as the
caller's key), and the memories live in SQL and FAISS."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient
from mem0.exceptions import MemoryNotFoundError


@pytest.fixture(scope="module")
def memory_gateway(
    engine_url: str,
    embedding_engine_url: str,
    gateway_settings: Callable[..., Settings],
    model: str,
    embedding_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A gateway fronting both engines of the session with the memory API on (the session's
    `pooling_gateway_url` has no blob directory of its own for the FAISS files)."""
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        memory_embedding_model=embedding_model,
        memory_extraction_model=model,
        memory_extraction_max_tokens=64,
        blob_dir=tmp_path_factory.mktemp("memory-blobs"),
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def tenant_key(admin: AdminClient) -> Callable[[str], str]:
    def make(name: str) -> str:
        tenant = admin.tenant(name)
        secret, _ = admin.key(tenant["id"], name)
        return secret

    return make


@pytest.fixture(scope="module")
def client(memory_gateway: str, tenant_key: Callable[[str], str]) -> MemoryClient:
    return MemoryClient(api_key=tenant_key("memory-a"), host=memory_gateway)


FACTS = [
    "I am vegetarian and I never eat meat.",
    "My favourite sport is tennis.",
    "I live in Lisbon near the river.",
]


def test_add_as_given_search_get_update_history_delete(client: MemoryClient) -> None:
    added = client.add([{"role": "user", "content": text} for text in FACTS], user_id="alice", infer=False)
    results = added["results"]
    assert [r["event"] for r in results] == ["ADD"] * 3
    assert [r["memory"] for r in results] == FACTS

    found = client.search("What food does alice eat?", filters={"user_id": "alice"}, top_k=3)["results"]
    assert found and found[0]["memory"] == FACTS[0]  # MiniLM ranks the vegetarian fact first
    assert all(-1.0 <= r["score"] <= 1.0 for r in found)
    assert [r["score"] for r in found] == sorted((r["score"] for r in found), reverse=True)

    listed = client.get_all(filters={"user_id": "alice"})
    assert listed["count"] == 3 and {m["memory"] for m in listed["results"]} == set(FACTS)

    memory_id = results[1]["id"]
    got = client.get(memory_id)
    assert got["memory"] == FACTS[1] and got["user_id"] == "alice" and got["metadata"] == {"role": "user"}

    client.update(memory_id, text="My favourite sport is padel.", metadata={"source": "chat"})
    assert client.get(memory_id)["memory"] == "My favourite sport is padel."
    # The new text is what search finds now.
    found = client.search("Which racket sport?", filters={"user_id": "alice"}, top_k=1)["results"]
    assert found[0]["id"] == memory_id

    client.delete(memory_id)
    with pytest.raises(MemoryNotFoundError):
        client.get(memory_id)
    history = client.history(memory_id)
    assert [h["event"] for h in history] == ["ADD", "UPDATE", "DELETE"]
    assert history[1]["old_memory"] == FACTS[1] and history[1]["new_memory"] == "My favourite sport is padel."

    client.delete_all(user_id="alice")
    assert client.get_all(filters={"user_id": "alice"})["count"] == 0


def test_add_with_inference_extracts_and_dedupes(client: MemoryClient) -> None:
    """The random-weight model's facts are nonsense, but guided decoding makes them parse: whatever
    it extracts is stored, each with an ADD in its history; the same conversation again adds no
    duplicate (same text: nothing; near text: UPDATE)."""
    messages = [{"role": "user", "content": "Hi, I'm Bob. I love hiking in the Alps."}]
    first = client.add(messages, user_id="bob")["results"]
    assert all(r["event"] == "ADD" for r in first)
    listed = client.get_all(filters={"user_id": "bob"})
    assert listed["count"] == len(first)
    for r in first:
        assert [h["event"] for h in client.history(r["id"])] == ["ADD"]
    second = client.add(messages, user_id="bob")["results"]
    assert all(r["event"] != "ADD" for r in second)  # temperature 0: the same facts again
    assert client.get_all(filters={"user_id": "bob"})["count"] == len(first)


def test_users_and_tenants_are_apart(
    client: MemoryClient, memory_gateway: str, tenant_key: Callable[[str], str]
) -> None:
    mine = client.add("I have a cat named Miso.", user_id="carol", infer=False)["results"][0]
    client.add("I have a dog named Rex.", user_id="dave", infer=False)
    # Another user of the same tenant: search never returns carol's memory to dave's scope.
    found = client.search("cat named Miso", filters={"user_id": "dave"}, top_k=10)["results"]
    assert found and all(r["user_id"] == "dave" for r in found)
    # Another tenant: the id is not found, and its search of the same user sees nothing.
    other = MemoryClient(api_key=tenant_key("memory-b"), host=memory_gateway)
    with pytest.raises(MemoryNotFoundError):
        other.get(mine["id"])
    with pytest.raises(MemoryNotFoundError):
        other.history(mine["id"])
    with pytest.raises(MemoryNotFoundError):
        other.delete(mine["id"])
    assert other.search("cat named Miso", filters={"user_id": "carol"})["results"] == []
    assert other.get_all(filters={"user_id": "carol"})["count"] == 0
    assert client.get(mine["id"])["memory"] == "I have a cat named Miso."


def test_errors_are_openai_envelopes(memory_gateway: str, tenant_key: Callable[[str], str]) -> None:
    headers = {"authorization": f"Token {tenant_key('memory-errors')}"}
    with httpx.Client(base_url=memory_gateway, headers=headers) as http:
        no_scope = http.post("/v3/memories/add/", json={"messages": "hello", "infer": False})
        assert no_scope.status_code == 400 and no_scope.json()["error"]["code"] == "missing_entity"
        bad_filter = http.post("/v3/memories/search/", json={"query": "x", "filters": {"OR": []}})
        assert bad_filter.status_code == 400 and bad_filter.json()["error"]["param"] == "filters.OR"
        bad_type = http.post("/v3/memories/search/", json={"query": 3})
        assert bad_type.status_code == 400 and bad_type.json()["error"]["param"] == "query"
        no_key = httpx.get(memory_gateway + "/v1/ping/")
        assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"


def test_embedding_and_extraction_tokens_are_in_the_ledger(
    memory_gateway: str, admin_key: str, model: str, embedding_model: str
) -> None:
    """The memory requests' own embeddings and extraction are the key's requests: their tokens are
    in the ledger under the tenant, by model (read through the memory gateway's own admin API,
    which writes out its pending ledger rows first)."""
    admin = AdminClient(memory_gateway, admin_key)
    tenant = admin.tenant("memory-ledger")
    key, _ = admin.key(tenant["id"], "ledger")
    client = MemoryClient(api_key=key, host=memory_gateway)
    # As given (one embedding), then with inference (one extraction; the random model's facts,
    # maybe none, embedded if any), then a search (one embedding: the scope holds a memory).
    client.add("I play the cello.", user_id="erin", infer=False)
    client.add("I play the cello.", user_id="erin")
    client.search("music", filters={"user_id": "erin"})
    rows = {row["model"]: row for row in admin.usage(group_by="model", tenant_id=tenant["id"])}
    admin.close()
    assert rows[embedding_model]["requests"] >= 2 and rows[embedding_model]["prompt_tokens"] > 0
    assert rows[model]["requests"] == 1 and rows[model]["completion_tokens"] > 0


def test_memory_in_chat_with_the_real_engines(memory_gateway: str, admin_key: str, model: str) -> None:
    """A chat naming its end user gets that user's relevant memories (MiniLM's similarity), says
    which in its header and usage; the openai SDK reads the answer as usual."""
    admin = AdminClient(memory_gateway, admin_key)
    tenant = admin.tenant("memory-chat", memory=True)
    key, _ = admin.key(tenant["id"], "chat")
    admin.close()
    client = MemoryClient(api_key=key, host=memory_gateway)
    tea = client.add("I like green tea with jasmine.", user_id="zoe", infer=False)["results"][0]["id"]
    client.add("I drink coffee every morning.", user_id="yann", infer=False)
    with openai.OpenAI(base_url=memory_gateway + "/v1", api_key=key, max_retries=0, timeout=300) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": "Which tea should I drink?"}],
            user="zoe",
            max_tokens=8,
        )
    completion = raw.parse()
    assert completion.choices[0].message is not None
    header = raw.headers["x-tantra-memory"]
    ids = [part.split(":")[0] for part in header.split(",")]
    assert ids == [tea]  # yann's coffee is another user's: never placed
    used = raw.http_response.json()["usage"]["tantra_memory"]
    assert used[0]["id"] == tea and 0.2 <= used[0]["score"] <= 1.0
