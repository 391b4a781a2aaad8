"""The Conversations API through the real openai SDK against a real gateway (real Redis, the
session's SQLite store): conversations created, read, updated and deleted; items added, listed in
pages in both orders, read and deleted; another tenant's ids are 404s; bad bodies are 400s naming
OpenAI's `param`; every call is a ledger row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import httpx
import openai
import pytest
from sqlalchemy import select

from gateway import Settings, create_app
from gateway.store import Database
from gateway.store.models import UsageRecord
from tests.gateway.conversations.conftest import ConversationsGateway
from tests.gateway.helpers import bearer, envelope
from tests.servers import ThreadedServer

FIRST: list[Any] = [
    {"role": "system", "content": "You are brief."},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]},
]


def test_create_retrieve_update_delete(client: openai.OpenAI) -> None:
    before = int(time.time())
    conversation = client.conversations.create(items=FIRST, metadata={"topic": "demo"})
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert conversation.metadata == {"topic": "demo"}
    assert before - 1 <= conversation.created_at <= time.time() + 1

    assert client.conversations.retrieve(conversation.id) == conversation
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [(i.type, i.role, i.status) for i in items.data] == [  # type: ignore[union-attr]
        ("message", "system", "completed"),
        ("message", "user", "completed"),
    ]
    # A string content is kept as one input_text part, as OpenAI shows it.
    system: Any = items.data[0]
    assert system.id.startswith("msg_")
    assert [(c.type, c.text) for c in system.content] == [("input_text", "You are brief.")]

    updated = client.conversations.update(conversation.id, metadata={"topic": "demo", "reviewed": "yes"})
    assert updated.metadata == {"topic": "demo", "reviewed": "yes"}
    assert client.conversations.retrieve(conversation.id).metadata == updated.metadata
    cleared = client.conversations.update(conversation.id, metadata=None)
    assert cleared.metadata == {}

    deleted = client.conversations.delete(conversation.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conversation.id, "conversation.deleted", True)
    for call in (
        lambda: client.conversations.retrieve(conversation.id),
        lambda: client.conversations.items.list(conversation.id),
        lambda: client.conversations.delete(conversation.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    empty = client.conversations.create()
    assert empty.metadata == {} and client.conversations.items.list(empty.id).data == []


def test_items_add_list_retrieve_delete(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(items=FIRST)
    added = client.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "assistant", "content": "Hi."},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q": "x"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
            {"id": "rs_given", "type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
        ],
        include=["message.output_text.logprobs"],
    )
    assert [item.type for item in added.data] == [
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
    ]
    assert added.first_id == added.data[0].id and added.last_id == "rs_given" and added.has_more is False
    answer, call, output, reasoning = cast(list[Any], added.data)
    assert answer.content[0].type == "output_text" and answer.content[0].text == "Hi."
    assert call.id.startswith("fc_") and call.name == "lookup" and call.status == "completed"
    assert output.output == "42"
    assert reasoning.summary[0].text == "thought"

    assert client.conversations.items.retrieve(call.id, conversation_id=conversation.id) == call
    # Newest first unless asked (OpenAI's default for this list).
    newest = client.conversations.items.list(conversation.id, limit=2)
    assert [i.id for i in newest.data] == ["rs_given", output.id] and newest.has_more
    every = [i.id for i in client.conversations.items.list(conversation.id, limit=2, order="asc")]
    assert len(every) == 6 and every[2:] == [answer.id, call.id, output.id, "rs_given"]
    assert [i.id for i in client.conversations.items.list(conversation.id, limit=2)] == every[::-1]

    shown = client.conversations.items.delete(call.id, conversation_id=conversation.id)
    assert (shown.id, shown.object) == (conversation.id, "conversation")
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(call.id, conversation_id=conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(call.id, conversation_id=conversation.id)
    assert call.id not in [i.id for i in client.conversations.items.list(conversation.id, limit=100)]


async def test_the_async_sdk_pages_through_a_long_conversation(
    conversations_gateway: ConversationsGateway, tenant_key: tuple[str, str]
) -> None:
    async with openai.AsyncOpenAI(
        base_url=conversations_gateway.url + "/v1", api_key=tenant_key[0], max_retries=0
    ) as client:
        conversation = await client.conversations.create(
            items=[{"role": "user", "content": f"m{n}"} for n in range(20)]
        )
        for start in (20, 40):
            await client.conversations.items.create(
                conversation.id,
                items=[{"role": "user", "content": f"m{n}"} for n in range(start, start + 20)],
            )
        texts = [
            item.content[0].text  # type: ignore[union-attr,index]
            async for item in client.conversations.items.list(conversation.id, order="asc", limit=7)
        ]
        assert texts == [f"m{n}" for n in range(60)]


def test_another_tenant_gets_404s(
    client: openai.OpenAI, conversations_gateway: ConversationsGateway, tenant_key: tuple[str, str]
) -> None:
    conversation = client.conversations.create(items=FIRST, metadata={"owner": "first"})
    item: Any = client.conversations.items.list(conversation.id).data[0]
    other_key, _ = conversations_gateway.tenant_key("intruder")
    with conversations_gateway.client(other_key) as other:
        calls = [
            lambda: other.conversations.retrieve(conversation.id),
            lambda: other.conversations.update(conversation.id, metadata={"stolen": "yes"}),
            lambda: other.conversations.items.list(conversation.id),
            lambda: other.conversations.items.create(
                conversation.id, items=[{"role": "user", "content": "x"}]
            ),
            lambda: other.conversations.items.retrieve(item.id, conversation_id=conversation.id),
            lambda: other.conversations.items.delete(item.id, conversation_id=conversation.id),
            lambda: other.conversations.delete(conversation.id),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError) as caught:
                call()
            assert caught.value.status_code == 404  # never a 403 that would say the id exists
    # The same answer as for an id that never existed.
    url = f"{conversations_gateway.url}/v1/conversations"
    never = envelope(httpx.get(f"{url}/conv_never", headers=bearer(other_key)), 404)
    theirs = envelope(httpx.get(f"{url}/{conversation.id}", headers=bearer(other_key)), 404)
    assert never["message"].replace("conv_never", conversation.id) == theirs["message"]
    assert (theirs["code"], theirs["type"]) == ("not_found", "invalid_request_error")
    # Nothing changed for the owner; a key of the same tenant sees it too.
    assert client.conversations.retrieve(conversation.id).metadata == {"owner": "first"}
    assert len(client.conversations.items.list(conversation.id).data) == 2
    assert httpx.get(f"{url}/{conversation.id}").status_code == 401


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"items": [{"role": "user", "content": "x"}] * 21}, "items", "array_above_max_length"),
        ({"items": [{"role": "bot", "content": "x"}]}, "items[0].role", "invalid_value"),
        ({"items": [{"content": "x"}]}, "items[0].type", "missing_required_parameter"),
        ({"items": [{"role": "user"}]}, "items[0].content", "missing_required_parameter"),
        (
            {"items": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]},
            "items[0].content[0].type",
            "invalid_value",
        ),
        (
            {"items": [FIRST[0], {"role": "user", "content": [{"type": "input_text", "text": 3}]}]},
            "items[1].content[0].text",
            "invalid_type",
        ),
        ({"items": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "items[0].call_id", None),
        ({"items": [{"type": "item_reference", "id": "msg_1"}]}, "items[0].type", "invalid_value"),
        ({"items": ["hello"]}, "items[0]", "invalid_type"),
        ({"items": "hello"}, "items", "invalid_type"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "object_above_max_properties"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
        ({"title": "x"}, "title", "unknown_parameter"),
    ],
)
def test_bad_create_bodies_are_400s(
    conversations_gateway: ConversationsGateway,
    tenant_key: tuple[str, str],
    body: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    url = f"{conversations_gateway.url}/v1/conversations"
    error = envelope(httpx.post(url, json=body, headers=bearer(tenant_key[0])), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if code is not None:
        assert error["code"] == code


def test_bad_item_additions_updates_and_list_parameters_are_400s(
    client: openai.OpenAI, conversations_gateway: ConversationsGateway, tenant_key: tuple[str, str]
) -> None:
    mine: Any = {"id": "msg_mine", "role": "user", "content": "x"}
    conversation = client.conversations.create(items=[mine])
    auth = bearer(tenant_key[0])
    one = f"{conversations_gateway.url}/v1/conversations/{conversation.id}"
    cases: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None, str]] = [
        ("POST", "/items", {"items": []}, None, "items"),
        ("POST", "/items", {}, None, "items"),
        ("POST", "/items", {"items": [{"role": "user", "content": "x"}] * 21}, None, "items"),
        (
            "POST",
            "/items",
            {"items": [{"id": "msg_mine", "role": "user", "content": "again"}]},
            None,
            "items[0].id",
        ),
        (
            "POST",
            "/items",
            {"items": [{"role": "user", "content": "x"}]},
            {"include[]": "nope"},
            "include[0]",
        ),
        ("POST", "", {}, None, "metadata"),
        ("POST", "", {"metadata": {"n": 1}}, None, "metadata.n"),
        ("GET", "/items", None, {"limit": 0}, "limit"),
        ("GET", "/items", None, {"limit": 101}, "limit"),
        ("GET", "/items", None, {"order": "newest"}, "order"),
    ]
    for method, path, body, params, param in cases:
        answer = httpx.request(method, one + path, json=body, params=params, headers=auth)
        assert envelope(answer, 400)["param"] == param, (method, path, body, params)
    # Nothing was added by the refused requests.
    assert [i.id for i in client.conversations.items.list(conversation.id)] == ["msg_mine"]
    raw = httpx.post(f"{conversations_gateway.url}/v1/conversations", content=b"{not json", headers=auth)
    assert envelope(raw, 400)["type"] == "invalid_request_error"


def test_every_call_is_a_ledger_row(
    client: openai.OpenAI, tenant_key: tuple[str, str], database_url: str
) -> None:
    conversation = client.conversations.create(items=FIRST)
    added = client.conversations.items.create(conversation.id, items=[{"role": "user", "content": "x"}])
    item: Any = added.data[0]
    client.conversations.retrieve(conversation.id)
    client.conversations.update(conversation.id, metadata={"a": "b"})
    client.conversations.items.list(conversation.id)
    client.conversations.items.retrieve(item.id, conversation_id=conversation.id)
    client.conversations.items.delete(item.id, conversation_id=conversation.id)
    client.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)
    expected = {
        ("POST /v1/conversations", 200),
        ("GET /v1/conversations/{id}", 200),
        ("POST /v1/conversations/{id}", 200),
        ("DELETE /v1/conversations/{id}", 200),
        ("POST /v1/conversations/{id}/items", 200),
        ("GET /v1/conversations/{id}/items", 200),
        ("GET /v1/conversations/{id}/items/{item_id}", 200),
        ("DELETE /v1/conversations/{id}/items/{item_id}", 200),
        ("GET /v1/conversations/{id}", 404),
    }

    async def rows() -> list[tuple[str, int, int, int]]:
        database = Database(database_url)
        try:
            async with database.session() as session:
                found = await session.execute(
                    select(
                        UsageRecord.endpoint,
                        UsageRecord.status,
                        UsageRecord.prompt_tokens,
                        UsageRecord.completion_tokens,
                    ).where(UsageRecord.key_id == tenant_key[1])
                )
                return [tuple(row) for row in found]  # type: ignore[misc]
        finally:
            await database.close()

    for _ in range(50):
        found = asyncio.run(rows())
        if {(endpoint, status) for endpoint, status, _, _ in found} >= expected:
            break
        time.sleep(0.1)
    assert {(endpoint, status) for endpoint, status, _, _ in found} == expected
    assert all((prompt, completion) == (0, 0) for _, _, prompt, completion in found)


def test_another_replica_on_the_same_store_continues_the_conversation(
    client: openai.OpenAI,
    conversations_gateway: ConversationsGateway,
    tenant_key: tuple[str, str],
    gateway_settings: Callable[..., Settings],
) -> None:
    """Written in the request, not batched: a second replica (or the first after a restart) reads
    and extends at once what the first one made."""
    conversation = client.conversations.create(items=FIRST, metadata={"replica": "one"})
    with (
        ThreadedServer(create_app(gateway_settings())) as second,
        openai.OpenAI(base_url=second.url + "/v1", api_key=tenant_key[0], max_retries=0) as there,
    ):
        assert there.conversations.retrieve(conversation.id).metadata == {"replica": "one"}
        there.conversations.items.create(
            conversation.id, items=[{"role": "assistant", "content": "From two."}]
        )
    newest: Any = client.conversations.items.list(conversation.id, limit=1).data[0]
    assert newest.role == "assistant" and newest.content[0].text == "From two."
