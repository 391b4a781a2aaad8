"""Memory in the Responses API with the real parts: the real `openai` SDK's `client.responses.create`
(JSON, stream, background, a follow-up) against a gateway in front of the session's real engines
(the tiny chat model answering vLLM's own /v1/responses, MiniLM embedding the memories and queries),
mem0's own client writing and updating the memories. What reached the engine is read from vLLM's
`input_messages` (the prompt it rendered, asked with `enable_response_messages`); the extraction
jobs and the panel's recall records from the gateway's own SQLite store."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

os.environ.setdefault("MEM0_TELEMETRY", "False")

from mem0 import MemoryClient

pytestmark = pytest.mark.engine

SHOW_PROMPT = {"enable_response_messages": True}
INTRO = "Remembered facts about the user:"
TEA = "I like green tea with jasmine."
COFFEE = "I drink coffee every morning."
QUESTION = "Which tea should I drink?"
EVENING = "Is jasmine tea good in the evening?"


@dataclass(frozen=True)
class World:
    url: str
    database: Path
    key: str
    key_id: str
    admin: AdminClient
    tea: str


@pytest.fixture(scope="module")
def world(
    engine_url: str,
    embedding_engine_url: str,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    model: str,
    embedding_model: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """A gateway over both engines with its own store (no other gateway of the session claims its
    extraction jobs), a tenant with memory on, and two end users' memories."""
    tmp = tmp_path_factory.mktemp("memory-responses")
    database = tmp / "store.db"
    settings = gateway_settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        memory_embedding_model=embedding_model,
        memory_extraction_model=model,
        memory_extraction_max_tokens=32,
        blob_dir=tmp / "blobs",
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant("responses-memory", memory=True)
        key, record = admin.key(tenant["id"], "responses")
        mem0 = MemoryClient(api_key=key, host=server.url)
        tea = mem0.add(TEA, user_id="zoe", infer=False)["results"][0]["id"]
        mem0.add(COFFEE, user_id="yann", infer=False)
        yield World(server.url, database, key, record["id"], admin, tea)
        admin.close()


@pytest.fixture(scope="module")
def sdk(world: World) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=world.url + "/v1", api_key=world.key, max_retries=0, timeout=300) as client:
        yield client


def prompt_of(body: dict[str, Any]) -> str:
    return "".join(m.get("message", "") for m in body.get("input_messages") or [])


def used_ids(header: str) -> list[str]:
    return [part.split(":")[0] for part in header.split(",")]


def rows(database: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(query, args).fetchall()


def extraction_jobs(world: World, request_id: str) -> list[dict[str, Any]]:
    """The `memory-extract` jobs queued for a request, waited for (they are queued after the body)."""
    deadline = time.monotonic() + 30
    while True:
        found = [
            json.loads(payload)
            for (payload,) in rows(world.database, "SELECT payload FROM jobs WHERE kind = 'memory-extract'")
            if json.loads(payload).get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def recall_record(world: World, request_id: str) -> tuple[Any, ...] | None:
    deadline = time.monotonic() + 30
    while True:
        found = rows(
            world.database,
            "SELECT end_user, found, prompt FROM memory_recalls WHERE request_id = ?",
            request_id,
        )
        if found or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.2)


def test_json_answer_places_reports_records_and_queues_the_turn(
    world: World, sdk: openai.OpenAI, model: str
) -> None:
    raw = sdk.responses.with_raw_response.create(
        model=model,
        input=QUESTION,
        instructions="Be brief.",
        user="zoe",
        max_output_tokens=4,
        extra_body=SHOW_PROMPT,
    )
    response = raw.parse()
    body = raw.http_response.json()
    # The header and usage name zoe's memory only (yann's coffee is another end user's).
    assert used_ids(raw.headers["x-tantra-memory"]) == [world.tea]
    used = body["usage"]["tantra_memory"]
    assert [u["id"] for u in used] == [world.tea] and 0.2 <= used[0]["score"] <= 1.0
    # The engine got the block appended to the request's instructions: one system message, first.
    prompt = prompt_of(body)
    assert f"Be brief.\n\n{INTRO}\n- {TEA}" in prompt and prompt.count(INTRO) == 1
    assert COFFEE not in prompt and prompt.index(INTRO) < prompt.index(QUESTION)
    # What the user reads back is what they sent.
    assert response.instructions == "Be brief."
    stored = sdk.responses.retrieve(response.id)
    assert stored.instructions == "Be brief."
    assert (stored.usage.model_extra or {})["tantra_memory"] == used  # type: ignore[union-attr]
    items = sdk.responses.input_items.list(response.id).data
    assert INTRO not in json.dumps([item.model_dump() for item in items])

    request_id = raw.headers["x-request-id"]
    record = recall_record(world, request_id)
    assert record is not None and record[0] == "zoe"
    assert [r["id"] for r in json.loads(record[1]) if r["placed"]] == [world.tea] and TEA in record[2]
    (job,) = extraction_jobs(world, request_id)
    assert job["user"] == "zoe" and job["messages"][0] == {"role": "user", "content": QUESTION}
    assert [m["role"] for m in job["messages"]][1:] == ["assistant"] * (len(job["messages"]) - 1)
    assert INTRO not in json.dumps(job["messages"])  # the placed block is never extracted again

    # A follow-up recalls for its own turn: one block, as a leading system message (no instructions
    # now: OpenAI's are not carried over), never the earlier turn's with it.
    raw = sdk.responses.with_raw_response.create(
        model=model,
        input=EVENING,
        previous_response_id=response.id,
        user="zoe",
        max_output_tokens=2,
        extra_body=SHOW_PROMPT,
    )
    follow = raw.http_response.json()
    assert used_ids(raw.headers["x-tantra-memory"]) == [world.tea]
    prompt = prompt_of(follow)
    assert prompt.count(INTRO) == 1 and "Be brief." not in prompt
    assert prompt.index(INTRO) < prompt.index(QUESTION) < prompt.index(EVENING)
    assert follow["instructions"] is None
    items = sdk.responses.input_items.list(follow["id"], order="asc").data
    assert INTRO not in json.dumps([item.model_dump() for item in items])
    (job,) = extraction_jobs(world, raw.headers["x-request-id"])
    assert job["messages"][0] == {"role": "user", "content": EVENING}


def test_stream_reports_in_its_header_and_completed_event(
    world: World, sdk: openai.OpenAI, model: str
) -> None:
    raw = sdk.responses.with_raw_response.create(
        model=model,
        input=[{"role": "system", "content": "Answer in French."}, {"role": "user", "content": QUESTION}],
        safety_identifier="zoe",
        max_output_tokens=3,
        stream=True,
        extra_body=SHOW_PROMPT,
    )
    assert used_ids(raw.headers["x-tantra-memory"]) == [world.tea]
    events = list(raw.parse())
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    body = final.response.model_dump()
    assert [u["id"] for u in body["usage"]["tantra_memory"]] == [world.tea]
    # The input's own leading system message takes the block (one system message).
    assert f"Answer in French.\n{INTRO}" in prompt_of(body) or f"Answer in French.\n\n{INTRO}" in prompt_of(
        body
    )
    assert prompt_of(body).count("<|im_start|>system") == 1
    assert extraction_jobs(world, raw.headers["x-request-id"])


def test_background_response_is_placed_at_create_and_extracted_by_its_job(
    world: World, sdk: openai.OpenAI, model: str
) -> None:
    raw = sdk.responses.with_raw_response.create(
        model=model,
        input=QUESTION,
        instructions="Be brief.",
        metadata={"user_id": "zoe"},
        background=True,
        max_output_tokens=3,
        extra_body=SHOW_PROMPT,
    )
    queued = raw.parse()
    assert used_ids(raw.headers["x-tantra-memory"]) == [world.tea]
    assert queued.instructions == "Be brief."
    deadline = time.monotonic() + 120
    while (done := sdk.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    body = done.model_dump()
    assert done.status in ("completed", "incomplete") and done.instructions == "Be brief."
    assert [u["id"] for u in body["usage"]["tantra_memory"]] == [world.tea]
    assert f"Be brief.\n\n{INTRO}\n- {TEA}" in prompt_of(body)
    (job,) = extraction_jobs(world, queued.id)  # the job's request id is the response's
    assert job["user"] == "zoe" and job["messages"][0] == {"role": "user", "content": QUESTION}


def test_other_users_tenants_and_memory_off_get_nothing_of_it(
    world: World, sdk: openai.OpenAI, model: str
) -> None:
    raw = sdk.responses.with_raw_response.create(
        model=model, input="Coffee or tea?", user="yann", max_output_tokens=2, extra_body=SHOW_PROMPT
    )
    assert TEA not in prompt_of(raw.http_response.json())
    assert world.tea not in raw.headers.get("x-tantra-memory", "")
    # Another tenant's request for an end user of the same name: nothing placed, nothing reported.
    tenant = world.admin.tenant("responses-memory-other", memory=True)
    other_key, _ = world.admin.key(tenant["id"], "other")
    with openai.OpenAI(base_url=world.url + "/v1", api_key=other_key, max_retries=0, timeout=300) as other:
        raw = other.responses.with_raw_response.create(
            model=model, input=QUESTION, user="zoe", max_output_tokens=2, extra_body=SHOW_PROMPT
        )
    body = raw.http_response.json()
    assert "x-tantra-memory" not in raw.headers and INTRO not in prompt_of(body)
    assert "tantra_memory" not in body["usage"]
    # No end user named: nothing.
    raw = sdk.responses.with_raw_response.create(model=model, input=QUESTION, max_output_tokens=2)
    assert "x-tantra-memory" not in raw.headers


def test_update_stores_the_expiry_and_an_expired_memory_is_not_placed(
    world: World, sdk: openai.OpenAI, model: str
) -> None:
    mem0 = MemoryClient(api_key=world.key, host=world.url)
    bike = mem0.add("I ride a red bicycle to work.", user_id="ines", infer=False)["results"][0]["id"]

    def placed() -> str:
        raw = sdk.responses.with_raw_response.create(
            model=model, input="How do I get to work?", user="ines", max_output_tokens=2
        )
        return raw.headers.get("x-tantra-memory", "")

    assert bike in placed()

    mem0.update(bike, expiration_date="2020-01-01")
    assert mem0.get(bike)["expiration_date"] == "2020-01-01T23:59:59+00:00"
    history = mem0.history(bike)
    assert [h["event"] for h in history] == ["ADD", "UPDATE"]
    assert history[1]["metadata"] == {
        "role": "user",
        "previous_expiration_date": None,
        "expiration_date": "2020-01-01T23:59:59+00:00",
    }
    assert mem0.search("bicycle", filters={"user_id": "ines"})["results"] == []
    assert placed() == ""

    # Cleared (mem0's `expiration_date=None`): found and placed again; the text is untouched.
    mem0.update(bike, expiration_date=None)
    assert mem0.get(bike)["expiration_date"] is None
    assert mem0.get(bike)["memory"] == "I ride a red bicycle to work."
    assert [r["id"] for r in mem0.search("bicycle", filters={"user_id": "ines"})["results"]] == [bike]
    assert mem0.history(bike)[-1]["metadata"]["previous_expiration_date"] == "2020-01-01T23:59:59+00:00"
    assert bike in placed()
