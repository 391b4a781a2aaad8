"""The memory API's logic with mem0's real `MemoryClient` as the client and a stand-in engine
(fake_models.py: bag-of-words embeddings, extraction answers on demand): paths and answer shapes,
dedupe by similarity, history, scopes and tenants, errors. The real engines: test_mem0_client.py."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.gateway.memory.fake_models import CHAT, EMBEDDING, FakeModels
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient
from mem0.exceptions import MemoryNotFoundError, ValidationError


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeModels, str]]:
    models = FakeModels()
    with ThreadedServer(models.app) as server:
        yield models, server.url


@pytest.fixture(scope="module")
def gateway(
    fake: tuple[FakeModels, str],
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, AdminClient]]:
    tmp = tmp_path_factory.mktemp("memory-units")
    settings = gateway_settings(
        # Its own store: the session's other gateways (memory on, other models) would otherwise
        # claim this one's memory-extract jobs from the shared job table.
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        engine_url=fake[1],
        memory_embedding_model=EMBEDDING,
        memory_extraction_model=CHAT,
        memory_dedupe_threshold=0.8,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield server.url, admin
        admin.close()


@pytest.fixture(scope="module")
def new_client(gateway: tuple[str, AdminClient]) -> Callable[[str], MemoryClient]:
    url, admin = gateway

    def make(name: str) -> MemoryClient:
        tenant = admin.tenant(name)
        secret, _ = admin.key(tenant["id"], name)
        return MemoryClient(api_key=secret, host=url)

    return make


def test_inferred_facts_are_added_then_updated_not_duplicated(
    fake: tuple[FakeModels, str], new_client: Callable[[str], MemoryClient]
) -> None:
    models, _ = fake
    client = new_client("units-infer")
    models.facts = ["likes green tea in the morning", "works as a nurse in Porto"]
    added = client.add([{"role": "user", "content": "I like green tea. I'm a nurse in Porto."}], user_id="u1")
    assert [r["event"] for r in added["results"]] == ["ADD", "ADD"]
    request = models.extractions[-1]
    assert request["model"] == CHAT
    assert request["response_format"]["type"] == "json_schema"
    assert "green tea" in request["messages"][-1]["content"]
    # The same fact again: nothing; a near one: the existing memory is updated.
    models.facts = ["likes green tea in the morning", "works as a nurse in Porto city"]
    again = client.add("I'm a nurse in Porto, and I like green tea.", user_id="u1")["results"]
    assert [r["event"] for r in again] == ["UPDATE"]
    nurse = again[0]["id"]
    assert nurse == added["results"][1]["id"]
    assert client.get(nurse)["memory"] == "works as a nurse in Porto city"
    history = client.history(nurse)
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert history[1]["old_memory"] == "works as a nurse in Porto"
    assert client.get_all(filters={"user_id": "u1"})["count"] == 2
    # Garbage from the model (not the schema): nothing added, no error.
    models.facts = []
    assert client.add("nothing here", user_id="u1")["results"] == []


def test_search_scopes_filters_and_threshold(new_client: Callable[[str], MemoryClient]) -> None:
    client = new_client("units-search")
    client.add("red apples are sweet", user_id="u1", agent_id="a1", infer=False, metadata={"kind": "food"})
    client.add("blue cars are fast", user_id="u1", agent_id="a2", infer=False, metadata={"kind": "car"})
    client.add("red apples for u2", user_id="u2", infer=False)
    found = client.search("red apples", filters={"user_id": "u1"})["results"]
    assert found[0]["memory"] == "red apples are sweet"
    assert all(r["user_id"] == "u1" for r in found)
    both = client.search("cars", filters={"AND": [{"user_id": "u1"}, {"agent_id": "a2"}]})["results"]
    assert [r["memory"] for r in both] == ["blue cars are fast"]
    by_metadata = client.search("anything", filters={"user_id": "u1", "metadata": {"kind": "food"}})
    assert [r["memory"] for r in by_metadata["results"]] == ["red apples are sweet"]
    strict = client.search("red apples", filters={"user_id": "u1"}, threshold=0.99)["results"]
    assert [r["memory"] for r in strict] == []  # the stored text has more words than the query
    page = client.get_all(filters={"user_id": "u1"}, page=1, page_size=1)
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"] and page["previous"] is None


def test_tenants_and_users_are_apart(new_client: Callable[[str], MemoryClient]) -> None:
    a, b = new_client("units-a"), new_client("units-b")
    mine = a.add("secret plans", user_id="same-user", infer=False)["results"][0]["id"]
    for call in (b.get, b.history, b.delete):
        with pytest.raises(MemoryNotFoundError):
            call(mine)
    with pytest.raises(MemoryNotFoundError):
        b.update(mine, text="overwritten")
    assert b.search("secret plans", filters={"user_id": "same-user"})["results"] == []
    assert b.get_all(filters={"user_id": "same-user"})["count"] == 0
    b.delete_all(user_id="same-user")
    assert a.get(mine)["memory"] == "secret plans"


def test_ledger_counts_the_embedding_and_extraction_requests_and_a_repeated_query_none(
    fake: tuple[FakeModels, str], gateway: tuple[str, AdminClient]
) -> None:
    url, admin = gateway
    tenant = admin.tenant("units-ledger")
    secret, _ = admin.key(tenant["id"])
    fake[0].facts = ["plays the cello"]
    client = MemoryClient(api_key=secret, host=url)
    client.add("I play the cello", user_id="u")
    first = client.search("music", filters={"user_id": "u"})
    # The same query again: its vector is the one kept from the first search (no engine call).
    assert client.search("music", filters={"user_id": "u"}) == first
    rows: dict[str, Any] = {r["model"]: r for r in admin.usage(group_by="model", tenant_id=tenant["id"])}
    assert rows[EMBEDDING]["requests"] == 2 and rows[EMBEDDING]["prompt_tokens"] == 6
    assert rows[CHAT]["requests"] == 1 and rows[CHAT]["completion_tokens"] == 7


def _chat(url: str, key: str, **fields: Any) -> httpx.Response:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "what tea do I like"}], **fields}
    return httpx.post(
        url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
    )


def test_memory_in_chat_placed_reported_and_extracted_after(
    fake: tuple[FakeModels, str], gateway: tuple[str, AdminClient]
) -> None:
    models, _ = fake
    url, admin = gateway
    tenant = admin.tenant("units-chat", memory=True)
    key, record = admin.key(tenant["id"])
    client = MemoryClient(api_key=key, host=url)
    tea = client.add("likes green tea in the morning", user_id="pat", infer=False)["results"][0]["id"]
    client.add("owns a red bicycle", user_id="pat", infer=False)
    client.add("likes black tea", user_id="someone-else", infer=False)

    models.facts = ["drinks tea every day"]
    answer = _chat(url, key, user="pat")
    assert answer.status_code == 200, answer.text
    used = dict(part.split(":") for part in answer.headers["x-tantra-memory"].split(","))
    assert tea in used
    assert answer.json()["usage"]["tantra_memory"][0]["id"] == tea
    sent = models.extractions[-1]["messages"]
    assert sent[0]["role"] == "system" and "likes green tea in the morning" in sent[0]["content"]
    assert "black tea" not in sent[0]["content"]  # another user's memory is never placed
    # A request with its own system message: the block is appended to it, one system message sent.
    asked = {"role": "user", "content": "what tea do I like"}
    own = [{"role": "system", "content": "Answer briefly."}, asked]
    assert _chat(url, key, user="pat", messages=own).status_code == 200
    sent = models.extractions[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].startswith("Answer briefly.\n\nRemembered facts about the user:\n- ")
    assert "likes green tea in the morning" in sent[0]["content"]
    # After the answer, the job extracts and adds the new fact.
    for _ in range(100):
        if any(
            m["memory"] == "drinks tea every day"
            for m in client.get_all(filters={"user_id": "pat"})["results"]
        ):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the extracted memory was not added")

    # A stream gets the header too; a key with memory off, and a request naming no user, get none.
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "tea"}], "user": "pat", "stream": True},
        headers={"authorization": f"Bearer {key}"},
        timeout=60,
    ) as streamed:
        assert tea in streamed.headers["x-tantra-memory"]
    assert "x-tantra-memory" not in _chat(url, key).headers
    admin.patch_key(record["id"], memory=False)
    time.sleep(0.3)  # the key cache hears of the change
    off = _chat(url, key, user="pat")
    assert "x-tantra-memory" not in off.headers and "tantra_memory" not in off.json()["usage"]


def test_update_stores_the_expiry_in_the_memory_and_its_history(
    new_client: Callable[[str], MemoryClient],
) -> None:
    """mem0's `update(id, expiration_date=...)` sets the expiry (an expired memory is not searched),
    records it in the history, and `expiration_date=None` clears it; leaving it out keeps it."""
    client = new_client("units-expiry")
    memory_id = client.add("red apples are sweet", user_id="u1", infer=False)["results"][0]["id"]
    client.update(memory_id, expiration_date="2020-01-01")
    got = client.get(memory_id)
    assert got["expiration_date"] == "2020-01-01T23:59:59+00:00" and got["memory"] == "red apples are sweet"
    assert client.search("red apples", filters={"user_id": "u1"})["results"] == []
    client.update(memory_id, text="red apples are very sweet")  # no expiration_date: kept
    assert client.get(memory_id)["expiration_date"] == "2020-01-01T23:59:59+00:00"
    client.update(memory_id, expiration_date=None)
    assert client.get(memory_id)["expiration_date"] is None
    found = client.search("red apples", filters={"user_id": "u1"})["results"]
    assert [r["id"] for r in found] == [memory_id]
    history = client.history(memory_id)
    assert [h["event"] for h in history] == ["ADD", "UPDATE", "UPDATE", "UPDATE"]
    assert history[1]["metadata"] == {
        "role": "user",
        "previous_expiration_date": None,
        "expiration_date": "2020-01-01T23:59:59+00:00",
    }
    assert "expiration_date" not in history[2]["metadata"]  # the text's update left the expiry alone
    assert history[3]["metadata"]["previous_expiration_date"] == "2020-01-01T23:59:59+00:00"
    assert history[3]["metadata"]["expiration_date"] is None
    with pytest.raises(ValidationError):  # the gateway's 400 on `expiration_date`
        client.update(memory_id, expiration_date="next tuesday")
