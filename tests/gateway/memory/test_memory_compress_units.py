"""Memory compression through the gateway with mem0's real `MemoryClient` and the stand-in engine
(fake_models.py, which answers the summary schema with `summary`): the scheduled `memory-compress`
job collapses exact duplicates without a model call, merges the oldest memories of a user over the
budget into a summary, records MERGE events in the history, and removes expired memories (which
search already skips)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway import Settings, create_app
from gateway.services.memory_compress import parse_summary
from tests.gateway.helpers import AdminClient
from tests.gateway.memory.fake_models import CHAT, EMBEDDING, FakeModels
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient

SUMMARY = "likes apples, bananas and cherries"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeModels]:
    models = FakeModels()
    models.summary = SUMMARY
    with ThreadedServer(models.app) as server:
        models.url = server.url  # type: ignore[attr-defined]
        yield models


@pytest.fixture(scope="module")
def client(
    fake: FakeModels,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MemoryClient]:
    tmp = tmp_path_factory.mktemp("memory-compress")
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        engine_url=fake.url,  # type: ignore[attr-defined]
        memory_embedding_model=EMBEDDING,
        memory_extraction_model=CHAT,
        memory_compress_enabled=True,
        memory_compress_max_per_user=3,
        memory_compress_batch=3,
        memory_compress_interval_s=0.5,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("compress")
        secret, _ = admin.key(tenant["id"], "compress")
        yield MemoryClient(api_key=secret, host=server.url)
        admin.close()


def _eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 60
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def _messages(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text} for text in texts]


def test_duplicates_collapse_and_the_oldest_merge_into_a_summary(
    client: MemoryClient, fake: FakeModels
) -> None:
    texts = ("likes apples", "likes bananas", "likes apples", "likes cherries", "owns a bike", "reads novels")
    # One request, one transaction: the job sees all six at once.
    added = client.add(_messages(*texts), user_id="u1", infer=False)["results"]
    ids = [r["id"] for r in added]
    kept = _eventually(
        lambda: (found := client.get_all(filters={"user_id": "u1"}))["count"] == 3 and found,
        "u1 was not compressed to its budget",
    )
    by_text = {m["memory"]: m for m in kept["results"]}
    assert set(by_text) == {SUMMARY, "owns a bike", "reads novels"}
    summary = by_text[SUMMARY]
    # The duplicate went into the first "likes apples" without a model call; the oldest three merged.
    assert summary["metadata"]["merged_from"] == [ids[0], ids[1], ids[3]]
    asked = [r for r in fake.extractions if r["response_format"]["json_schema"]["name"] == "summary"]
    assert len(asked) == 1 and "likes cherries" in asked[0]["messages"][-1]["content"]
    assert asked[0]["messages"][-1]["content"].count("likes apples") == 1

    duplicate = client.history(ids[2])
    assert [h["event"] for h in duplicate] == ["ADD", "MERGE"]
    assert (
        duplicate[-1]["new_memory"] == "likes apples" and duplicate[-1]["metadata"]["merged_into"] == ids[0]
    )
    merged = client.history(ids[1])
    assert [h["event"] for h in merged] == ["ADD", "MERGE"]
    assert merged[-1]["old_memory"] == "likes bananas" and merged[-1]["new_memory"] == SUMMARY
    assert merged[-1]["metadata"]["merged_into"] == summary["id"]
    made = client.history(summary["id"])
    assert made[0]["event"] == "ADD" and len(made[0]["input"]) == 3
    # The summary is searchable; what was merged is not.
    found = client.search("apples bananas cherries", filters={"user_id": "u1"})["results"]
    assert {r["id"] for r in found} <= {m["id"] for m in kept["results"]}


def test_expired_memories_are_skipped_then_removed(client: MemoryClient) -> None:
    client.add("visiting Rome this week", user_id="u2", infer=False, expiration_date="2020-01-01")
    lasting = client.add("lives in Oslo", user_id="u2", infer=False, expiration_date="2999-12-31")["results"]
    found = client.search("Rome Oslo", filters={"user_id": "u2"})["results"]
    assert [r["memory"] for r in found] == ["lives in Oslo"]
    assert found[0]["expiration_date"].startswith("2999-12-31")
    _eventually(lambda: client.get_all(filters={"user_id": "u2"})["count"] == 1, "the expired memory stayed")
    assert client.get(lasting[0]["id"])["memory"] == "lives in Oslo"


def test_a_user_under_the_budget_is_left_alone(client: MemoryClient) -> None:
    added = client.add(_messages("one", "two", "two"), user_id="u3", infer=False)["results"]
    time.sleep(1.5)  # a few runs of the job (every 0.5 s) go by
    assert {m["id"] for m in client.get_all(filters={"user_id": "u3"})["results"]} == {r["id"] for r in added}


def test_parse_summary() -> None:
    def answer(content: str) -> dict[str, Any]:
        return {"choices": [{"message": {"content": content}}]}

    assert parse_summary(answer('{"summary": " short "}')) == "short"
    for bad in ("nope", '{"summary": 3}', '{"other": "x"}', '{"summary": "  "}'):
        assert parse_summary(answer(bad)) == ""
