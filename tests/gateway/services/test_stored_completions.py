"""Stored chat completions end to end: the real `openai` SDK against the gateway in front of the real
vLLM engine, the completions kept in the session's SQLite store."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from gateway import Settings, create_app
from gateway.store import Database
from gateway.store.models import UsageRecord
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine

HELLO: list[Any] = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hello."}]},
]
EXACT = {"ignore_eos": True}


def run_id() -> str:
    """A metadata value only this test's completions carry: the session's store is shared."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def other_tenant(admin: AdminClient, gateway_url: str) -> Iterator[openai.OpenAI]:
    tenant = admin.tenant(f"stored-other-{run_id()}")
    secret, _ = admin.key(tenant["id"], "other")
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=secret, max_retries=0, timeout=60) as client:
        yield client


def test_store_list_retrieve_update_messages_delete(openai_client: openai.OpenAI, model: str) -> None:
    run = run_id()
    answer = openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_completion_tokens=6,
        temperature=0.5,
        seed=7,
        user="end-user-1",
        store=True,
        metadata={"run": run, "topic": "greeting"},
        extra_body=EXACT,
    )
    listed = openai_client.chat.completions.list(model=model, metadata={"run": run})
    assert [c.id for c in listed.data] == [answer.id]
    assert listed.has_more is False
    assert listed.first_id == listed.last_id == answer.id  # type: ignore[attr-defined]

    stored = openai_client.chat.completions.retrieve(answer.id)
    assert stored.model == answer.model == model and stored.created == answer.created
    assert stored.choices[0].message.content == answer.choices[0].message.content
    assert stored.choices[0].finish_reason == "length"
    assert stored.usage == answer.usage
    assert stored.metadata == {"run": run, "topic": "greeting"}
    extra = stored.model_extra or {}
    assert (extra["input_user"], extra["temperature"], extra["seed"]) == ("end-user-1", 0.5, 7)

    messages = openai_client.chat.completions.messages.list(answer.id)
    shown = [(m.id, m.role, m.content) for m in messages.data]
    assert shown == [(f"{answer.id}-0", "system", "You are brief."), (f"{answer.id}-1", "user", "Say hello.")]
    assert messages.data[1].content_parts is not None and len(messages.data[1].content_parts) == 2
    second_page = openai_client.chat.completions.messages.list(answer.id, limit=1, after=f"{answer.id}-0")
    assert [m.id for m in second_page.data] == [f"{answer.id}-1"] and not second_page.has_more
    newest = openai_client.chat.completions.messages.list(answer.id, limit=1, order="desc")
    assert [m.id for m in newest.data] == [f"{answer.id}-1"] and newest.has_more

    updated = openai_client.chat.completions.update(answer.id, metadata={"run": run, "reviewed": "yes"})
    assert updated.metadata == {"run": run, "reviewed": "yes"}
    assert openai_client.chat.completions.list(metadata={"run": run, "topic": "greeting"}).data == []
    assert [c.id for c in openai_client.chat.completions.list(metadata={"reviewed": "yes", "run": run})] == [
        answer.id
    ]

    deleted = openai_client.chat.completions.delete(answer.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (answer.id, True, "chat.completion.deleted")
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.retrieve(answer.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.delete(answer.id)


async def test_a_streamed_completion_is_stored_as_the_client_saw_it(
    async_openai_client: openai.AsyncOpenAI, model: str
) -> None:
    run = run_id()
    stream = await async_openai_client.chat.completions.create(
        model=model,
        messages=HELLO,
        max_completion_tokens=12,
        stream=True,
        store=True,
        metadata={"run": run},
        extra_body=EXACT,
    )
    chunks = [chunk async for chunk in stream]
    seen = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(c.usage is None for c in chunks)  # usage not asked for: none shown, but stored
    stored = await async_openai_client.chat.completions.retrieve(chunks[0].id)
    assert stored.choices[0].message.content == seen and seen
    assert stored.choices[0].message.role == "assistant"
    assert stored.choices[0].finish_reason == "length"
    assert stored.usage is not None and stored.usage.completion_tokens == 12
    listed = await async_openai_client.chat.completions.list(metadata={"run": run})
    assert [c.id for c in listed.data] == [chunks[0].id]


async def test_streamed_tool_calls_are_assembled(async_openai_client: openai.AsyncOpenAI, model: str) -> None:
    """A named tool choice makes vLLM stream a tool call (its arguments constrained to the schema):
    the stored one is its deltas put together, as the client's SDK sees them."""
    tool: Any = {
        "type": "function",
        "function": {
            "name": "pick",
            "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
        },
    }
    run = run_id()
    common: Any = {
        "model": model,
        "messages": HELLO,
        "max_completion_tokens": 40,
        "temperature": 0,
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "pick"}},
        "store": True,
        "metadata": {"run": run},
    }
    await async_openai_client.chat.completions.create(**common)  # JSON: stored as it is
    stream = await async_openai_client.chat.completions.create(**common, stream=True)
    chunks = [chunk async for chunk in stream]
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert deltas, "the engine streamed no tool call"
    stored = await async_openai_client.chat.completions.retrieve(chunks[0].id)
    [call] = stored.choices[0].message.tool_calls or []
    assert call.id == deltas[0].id and call.type == "function"
    assert call.function.name == "pick"
    seen = "".join(d.function.arguments or "" for d in deltas if d.function is not None)
    assert call.function.arguments == seen
    assert stored.model_extra and stored.model_extra["tools"] == [tool]
    assert len((await async_openai_client.chat.completions.list(metadata={"run": run})).data) == 2


def test_without_store_nothing_is_kept(openai_client: openai.OpenAI, model: str) -> None:
    run = run_id()
    for store in (False, None):
        extra = {} if store is None else {"store": store}
        openai_client.chat.completions.create(
            model=model, messages=HELLO, max_completion_tokens=2, metadata={"run": run}, extra_body=extra
        )
    # Without `store`, metadata is vLLM's ignored key: any value passes, as vLLM takes it.
    openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=2, extra_body={"metadata": {"run": 1}}
    )
    assert openai_client.chat.completions.list(metadata={"run": run}).data == []


def test_another_tenant_gets_404s(
    openai_client: openai.OpenAI, other_tenant: openai.OpenAI, gateway_url: str, model: str
) -> None:
    run = run_id()
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=2, store=True, metadata={"run": run}
    )
    assert other_tenant.chat.completions.list(metadata={"run": run}).data == []
    calls = [
        lambda: other_tenant.chat.completions.retrieve(answer.id),
        lambda: other_tenant.chat.completions.update(answer.id, metadata={"stolen": "yes"}),
        lambda: other_tenant.chat.completions.messages.list(answer.id),
        lambda: other_tenant.chat.completions.delete(answer.id),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.status_code == 404  # never a 403 that would say the id exists
    # The same answer as for an id that never existed.
    never = httpx.get(
        f"{gateway_url}/v1/chat/completions/chatcmpl-never", headers=bearer(other_tenant.api_key)
    )
    theirs = httpx.get(f"{gateway_url}/v1/chat/completions/{answer.id}", headers=bearer(other_tenant.api_key))
    assert (
        envelope(never, 404)["message"].replace("chatcmpl-never", answer.id)
        == envelope(theirs, 404)["message"]
    )
    assert openai_client.chat.completions.retrieve(answer.id).metadata == {"run": run}
    assert httpx.get(f"{gateway_url}/v1/chat/completions").status_code == 401


@pytest.mark.parametrize(
    ("metadata", "param", "code"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata", "object_above_max_properties"),
        ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
        ({"k": "v" * 513}, "metadata.k", "string_above_max_length"),
        ({"n": 1}, "metadata.n", "invalid_type"),
        ("tags", "metadata", "invalid_type"),
    ],
)
def test_metadata_is_checked_as_openai_checks_it(
    gateway_url: str, auth: dict[str, str], model: str, metadata: Any, param: str, code: str
) -> None:
    body = {"model": model, "messages": HELLO, "max_tokens": 1, "store": True, "metadata": metadata}
    error = envelope(httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=auth), 400)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_bad_list_parameters_and_updates_are_400s(
    openai_client: openai.OpenAI, gateway_url: str, auth: dict[str, str], model: str
) -> None:
    url = f"{gateway_url}/v1/chat/completions"
    assert envelope(httpx.get(url, params={"limit": 0}, headers=auth), 400)["param"] == "limit"
    assert envelope(httpx.get(url, params={"limit": 101}, headers=auth), 400)["param"] == "limit"
    assert envelope(httpx.get(url, params={"order": "newest"}, headers=auth), 400)["param"] == "order"
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=1, store=True, metadata={"run": run_id()}
    )
    one = f"{url}/{answer.id}"
    assert envelope(httpx.post(one, json={"metadata": {"n": 2}}, headers=auth), 400)["param"] == "metadata.n"
    assert envelope(httpx.post(one, json={}, headers=auth), 400)["param"] == "metadata"
    assert (
        envelope(httpx.post(one, json={"model": "x", "metadata": {}}, headers=auth), 400)["param"] == "model"
    )
    cleared = httpx.post(one, json={"metadata": None}, headers=auth)
    assert cleared.status_code == 200 and cleared.json()["metadata"] == {}


def test_reads_are_in_the_ledger(openai_client: openai.OpenAI, model: str, database_url: str) -> None:
    answer = openai_client.chat.completions.create(
        model=model, messages=HELLO, max_completion_tokens=1, store=True, metadata={"run": run_id()}
    )
    openai_client.chat.completions.retrieve(answer.id)
    openai_client.chat.completions.messages.list(answer.id)

    async def endpoints() -> list[tuple[str, str, int]]:
        database = Database(database_url)
        try:
            async with database.session() as session:
                rows = await session.execute(
                    select(UsageRecord.endpoint, UsageRecord.model, UsageRecord.status).where(
                        UsageRecord.endpoint.like("GET /v1/chat/completions/%")
                    )
                )
                return [tuple(row) for row in rows]  # type: ignore[misc]
        finally:
            await database.close()

    for _ in range(50):
        found = asyncio.run(endpoints())
        if {e for e, _, _ in found} >= {
            "GET /v1/chat/completions/{id}",
            "GET /v1/chat/completions/{id}/messages",
        }:
            break
        time.sleep(0.1)
    assert ("GET /v1/chat/completions/{id}", model, 200) in found
    assert ("GET /v1/chat/completions/{id}/messages", model, 200) in found


def test_replicas_share_the_store_and_a_replica_reads_its_own_writes_at_once(
    openai_client: openai.OpenAI,
    engine_url: str,
    gateway_settings: Callable[..., Settings],
    api_key: str,
    model: str,
) -> None:
    """A second replica on the same store, holding its writes for a minute: what it stored is not
    yet in the database (the other replica does not list it), but it lists it itself at once (a read
    writes its replica's waiting completions first), and a replica that stops writes what it holds."""
    settings = gateway_settings(engine_url=engine_url, ledger_flush_interval_s=60)
    run = run_id()
    with (
        ThreadedServer(create_app(settings)) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=60) as replica,
    ):
        first = replica.chat.completions.create(
            model=model, messages=HELLO, max_completion_tokens=2, store=True, metadata={"run": run}
        )
        assert openai_client.chat.completions.list(metadata={"run": run}).data == []
        assert [c.id for c in replica.chat.completions.list(metadata={"run": run})] == [first.id]
        assert [c.id for c in openai_client.chat.completions.list(metadata={"run": run})] == [first.id]
        second = replica.chat.completions.create(
            model=model, messages=HELLO, max_completion_tokens=2, store=True, metadata={"run": run}
        )
    # The replica stopped: it wrote what it held on its way out.
    assert openai_client.chat.completions.retrieve(second.id).metadata == {"run": run}


def test_a_stream_the_client_left_is_not_stored(
    openai_client: openai.OpenAI, gateway_url: str, auth: dict[str, str], model: str, database_url: str
) -> None:
    run, request_id = run_id(), f"stored-left-{run_id()}"
    body = {
        "model": model,
        "messages": HELLO,
        "max_completion_tokens": 1800,
        "ignore_eos": True,
        "stream": True,
        "store": True,
        "metadata": {"run": run},
    }
    headers = {**auth, "x-request-id": request_id}
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, headers=headers) as answer,
    ):
        assert answer.status_code == 200
        next(answer.iter_lines())  # the first event, then the client leaves

    async def outcome() -> str | None:
        database = Database(database_url)
        try:
            async with database.session() as session:
                found = await session.execute(
                    select(UsageRecord.outcome).where(UsageRecord.client_request_id == request_id)
                )
                return found.scalar_one_or_none()
        finally:
            await database.close()

    for _ in range(100):
        ended = asyncio.run(outcome())
        if ended is not None:
            break
        time.sleep(0.1)
    assert ended == "client_closed"
    assert openai_client.chat.completions.list(metadata={"run": run}).data == []
