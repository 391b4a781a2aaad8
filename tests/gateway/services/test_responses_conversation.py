"""A response given `conversation` (issue 18, point 6): the real `openai` SDK against the gateway in
front of the session's real vLLM engine, the conversation and the responses in the session's SQLite
store. The conversation's items come first in what the engine is sent (vLLM's `input_messages`, the
prompt it rendered, shows it), and a response that answered appends its input and output items to
it: foreground, streamed (at the stream's end) and background (at the job's end)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.services.responses_background import conversation_turn
from gateway.store.owned import Owner
from tests.gateway.helpers import AdminClient, envelope

SHOW_PROMPT = {"enable_response_messages": True}
EXACT = {"ignore_eos": True}
FINAL = {"completed", "incomplete", "failed", "cancelled"}


@pytest.fixture(scope="module")
def other_tenant(admin: AdminClient, gateway_url: str) -> Iterator[openai.OpenAI]:
    tenant = admin.tenant(f"responses-conv-other-{uuid.uuid4().hex[:8]}")
    secret, _ = admin.key(tenant["id"], "other")
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=secret, max_retries=0, timeout=60) as client:
        yield client


def extra(response: Any, name: str) -> Any:
    return (response.model_extra or {}).get(name)


def conversation_of(response: Any) -> Any:
    shown = getattr(response, "conversation", None) or extra(response, "conversation")
    return shown if isinstance(shown, dict) else {"id": shown.id} if shown is not None else None


def prompt_of(response: Any) -> str:
    messages = extra(response, "input_messages") or []
    return "".join(message.get("message", "") for message in messages)


def texts(items: Any) -> list[str]:
    return ["".join(getattr(part, "text", "") for part in item.content) for item in items]


def items_of(client: openai.OpenAI, conversation_id: str) -> list[Any]:
    return list(client.conversations.items.list(conversation_id, order="asc", limit=100).data)


def wait_items(client: openai.OpenAI, conversation_id: str, count: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = items_of(client, conversation_id)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.2)


@pytest.mark.engine
def test_a_response_reads_and_appends_to_its_conversation(openai_client: openai.OpenAI, model: str) -> None:
    conversation = openai_client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is ZORBLAX."}]
    )
    first = openai_client.responses.create(
        model=model,
        input="Remember the word PAPAYA.",
        conversation=conversation.id,
        max_output_tokens=4,
        extra_body={**EXACT, **SHOW_PROMPT},
    )
    assert first.status == "incomplete" and conversation_of(first) == {"id": conversation.id}
    assert prompt_of(first).index("ZORBLAX") < prompt_of(first).index("PAPAYA")
    items = items_of(openai_client, conversation.id)
    # The conversation's item, then this turn's input, then its output (the engine's item ids).
    assert [(item.type, item.role) for item in items] == [
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert texts(items)[:2] == ["My name is ZORBLAX.", "Remember the word PAPAYA."]
    assert items[2].id == first.output[0].id and texts(items)[2] == texts(first.output)[0]

    second = openai_client.responses.create(
        model=model,
        input="Which word?",
        conversation={"id": conversation.id},
        max_output_tokens=3,
        extra_body={**EXACT, **SHOW_PROMPT},
    )
    prompt = prompt_of(second)
    # The engine rendered the first turn (its input and its answer) before the second.
    assert prompt.index("ZORBLAX") < prompt.index("PAPAYA") < prompt.index("Which word?")
    assert texts(first.output)[0] in prompt
    stored = openai_client.responses.input_items.list(second.id, order="asc")
    assert [item.id for item in stored.data] == [*(item.id for item in items), stored.data[3].id]
    assert texts(items_of(openai_client, conversation.id))[3] == "Which word?"
    assert len(items_of(openai_client, conversation.id)) == 5


@pytest.mark.engine
def test_streamed_and_background_responses_append_at_their_end(
    openai_client: openai.OpenAI, model: str
) -> None:
    conversation = openai_client.conversations.create()
    with openai_client.responses.create(
        model=model, input="Streamed.", conversation=conversation.id, max_output_tokens=2, stream=True
    ) as stream:
        events = list(stream)
    final = events[-1].response  # type: ignore[union-attr]
    assert conversation_of(final) == {"id": conversation.id}
    items = wait_items(openai_client, conversation.id, 2)
    assert texts(items)[0] == "Streamed." and items[1].id == final.output[0].id

    queued = openai_client.responses.create(
        model=model, input="Background.", conversation=conversation.id, max_output_tokens=2, background=True
    )
    assert conversation_of(queued) == {"id": conversation.id}
    items = wait_items(openai_client, conversation.id, 4)
    done = openai_client.responses.retrieve(queued.id)
    assert done.status in FINAL and conversation_of(done) == {"id": conversation.id}
    assert texts(items)[2] == "Background." and items[3].id == done.output[0].id
    # The background job was sent the conversation's first turn too.
    assert [item.id for item in openai_client.responses.input_items.list(queued.id, order="asc").data][
        :2
    ] == [items[0].id, items[1].id]


@pytest.mark.engine
def test_a_failed_response_appends_nothing(openai_client: openai.OpenAI, model: str) -> None:
    conversation = openai_client.conversations.create(items=[{"role": "user", "content": "Kept."}])
    queued = openai_client.responses.create(
        model=model,
        input=[{"type": "no_such_item", "text": "x"}],  # type: ignore[typeddict-item]
        conversation=conversation.id,
        background=True,
        max_output_tokens=2,
    )
    deadline = time.monotonic() + 30
    while openai_client.responses.retrieve(queued.id).status not in FINAL and time.monotonic() < deadline:
        time.sleep(0.2)
    assert openai_client.responses.retrieve(queued.id).status == "failed"
    assert texts(items_of(openai_client, conversation.id)) == ["Kept."]


@pytest.mark.engine
def test_another_tenants_or_an_unknown_conversation_is_a_404(
    openai_client: openai.OpenAI, other_tenant: openai.OpenAI, model: str
) -> None:
    conversation = openai_client.conversations.create(items=[{"role": "user", "content": "Mine."}])
    for conversation_id in (conversation.id, "conv_nope"):
        with pytest.raises(openai.NotFoundError) as caught:
            other_tenant.responses.create(
                model=model, input="Hi", conversation=conversation_id, max_output_tokens=1
            )
        assert caught.value.status_code == 404 and caught.value.param == "conversation"
    assert texts(items_of(openai_client, conversation.id)) == ["Mine."]


@pytest.mark.engine
def test_conversation_with_previous_response_id_or_of_a_bad_type_is_a_400(
    gateway_url: str, auth: dict[str, str], model: str
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"conversation": "conv_1", "previous_response_id": "resp_1"}, "mutually_exclusive_parameters"),
        ({"conversation": {"name": "x"}}, "invalid_type"),
        ({"conversation": 7}, "invalid_type"),
    ]
    for extra_fields, code in cases:
        body = {"model": model, "input": "Hi", **extra_fields}
        error = envelope(httpx.post(gateway_url + "/v1/responses", headers=auth, json=body), 400)
        assert (error["param"], error["code"]) == ("conversation", code), body


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]], str | None]] = []

    async def append(
        self, owner: Owner, conversation_id: str, items: list[dict[str, Any]], *, end_user: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append((conversation_id, items, end_user))
        return items


@pytest.mark.parametrize("status", ["completed", "incomplete", "failed", "cancelled", "in_progress"])
async def test_only_an_answered_response_adds_its_turn(status: str) -> None:
    recorder = _Recorder()
    question = {"type": "message", "role": "user", "content": "Q"}
    answer = {"type": "message", "role": "assistant", "id": "msg_1", "content": []}
    await conversation_turn(
        recorder,  # type: ignore[arg-type]
        Owner("t", "k"),
        "conv_1",
        [question],
        {"status": status, "output": [answer]},
        end_user="u",
    )
    answered = status in ("completed", "incomplete")
    assert recorder.calls == ([("conv_1", [question, answer], "u")] if answered else [])
