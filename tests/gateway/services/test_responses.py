"""The Responses API end to end: the real `openai` SDK against the gateway in front of real vLLM
engines (vLLM's own /v1/responses underneath), the responses kept in the session's SQLite store.

A follow-up (`previous_response_id`) goes to a SECOND gateway replica in front of a SECOND engine
(started by this module, ~60 s), sharing only the store: the engine that answers it never saw the
first turn, so what it was given (vLLM's `input_messages`, the prompt it rendered) proves the
gateway rebuilt the history from the store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select

from engine.launcher import EngineConfig, EngineProcess
from gateway import Settings, create_app
from gateway.store import Database
from gateway.store.models import UsageRecord
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.servers import ThreadedServer, free_port, logged_engine

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[3]
# vLLM's extra: the rendered prompt in the response (`input_messages`), to see what reached the engine.
SHOW_PROMPT = {"enable_response_messages": True}
EXACT = {"ignore_eos": True}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FINAL = {"completed", "incomplete", "failed", "cancelled"}


@pytest.fixture(scope="module")
def second_engine(tiny_checkpoint: Path) -> Iterator[EngineProcess]:
    config = EngineConfig(
        model_dir=tiny_checkpoint, served_model_name="tantra-tiny", port=free_port(), max_model_len=2048
    )
    with logged_engine(config, ROOT / ".cache" / "test-responses-engine-b.log") as process:
        yield process


@pytest.fixture(scope="module")
def replica_b(
    second_engine: EngineProcess, gateway_settings: Callable[..., Settings], api_key: str
) -> Iterator[openai.OpenAI]:
    """A second gateway over the same store, in front of the second engine only."""
    with (
        ThreadedServer(create_app(gateway_settings(engine_url=second_engine.base_url))) as server,
        openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=120) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def other_tenant(admin: AdminClient, gateway_url: str) -> Iterator[openai.OpenAI]:
    tenant = admin.tenant(f"responses-other-{uuid.uuid4().hex[:8]}")
    secret, _ = admin.key(tenant["id"], "other")
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=secret, max_retries=0, timeout=60) as client:
        yield client


def prompt_of(response: Any) -> str:
    messages = (response.model_extra or {}).get("input_messages") or []
    return "".join(message.get("message", "") for message in messages)


def extra(response: Any, name: str) -> Any:
    """A field the SDK's model does not declare (OpenAI's `store`, vLLM's extras)."""
    return (response.model_extra or {}).get(name)


def text_of(response: Any) -> str:
    return "".join(part.text for item in response.output if item.type == "message" for part in item.content)


def wait_final(client: openai.OpenAI, response_id: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in FINAL or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_store_and_follow_up_on_another_replica_and_engine(
    openai_client: openai.OpenAI, replica_b: openai.OpenAI, model: str
) -> None:
    first = openai_client.responses.create(
        model=model,
        input="Remember the word PAPAYA.",
        instructions="Be brief.",
        max_output_tokens=4,
        extra_body=EXACT,
    )
    assert first.status == "incomplete" and extra(first, "store") is True
    assert first.usage is not None and first.usage.output_tokens == 4
    answered = text_of(first)
    # Read back on the other replica: the store is shared.
    assert replica_b.responses.retrieve(first.id).output[0].id == first.output[0].id

    second = replica_b.responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Which word?"}]}],
        previous_response_id=first.id,
        max_output_tokens=3,
        extra_body={**EXACT, **SHOW_PROMPT},
    )
    assert second.previous_response_id == first.id
    prompt = prompt_of(second)
    # The second engine rendered the whole history: turn one's input and answer, then turn two.
    assert "Remember the word PAPAYA." in prompt and "Which word?" in prompt
    assert answered in prompt
    assert prompt.index("PAPAYA") < prompt.index(answered) < prompt.index("Which word?")
    # Instructions are not carried over (OpenAI's rule).
    assert "Be brief." not in prompt

    items = openai_client.responses.input_items.list(second.id, order="asc")
    kinds = [(item.type, getattr(item, "role", None)) for item in items.data]
    assert kinds == [("message", "user"), ("message", "assistant"), ("message", "user")]
    assert items.data[1].id == first.output[0].id
    newest = openai_client.responses.input_items.list(second.id, limit=1)
    assert newest.data[0].id == items.data[2].id and newest.has_more
    after = openai_client.responses.input_items.list(second.id, after=newest.data[0].id)
    assert [item.id for item in after.data] == [items.data[1].id, items.data[0].id]


def test_store_false_keeps_nothing_and_a_follow_up_to_it_is_a_400(
    openai_client: openai.OpenAI, model: str, gateway_url: str, auth: dict[str, str]
) -> None:
    unstored = openai_client.responses.create(model=model, input="Hi", max_output_tokens=2, store=False)
    assert extra(unstored, "store") is False
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(unstored.id)
    answer = httpx.post(
        gateway_url + "/v1/responses",
        headers=auth,
        json={"model": model, "input": "Hi", "previous_response_id": unstored.id},
    )
    error = envelope(answer, 400)
    assert (error["code"], error["param"]) == ("previous_response_not_found", "previous_response_id")


def test_bad_requests_are_openai_400s(gateway_url: str, auth: dict[str, str], model: str) -> None:
    cases = [
        ({"model": model, "input": "Hi", "conversation": {"name": "conv_1"}}, "conversation"),
        ({"model": model, "input": "Hi", "background": True, "store": False}, "background"),
        ({"model": model}, "input"),
        ({"model": model, "input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": model, "input": "Hi", "metadata": {"k": 1}}, "metadata.k"),
    ]
    for body, param in cases:
        answer = httpx.post(gateway_url + "/v1/responses", headers=auth, json=body)
        assert envelope(answer, 400)["param"] == param, body


def test_streaming_has_openai_events_and_is_stored(openai_client: openai.OpenAI, model: str) -> None:
    with openai_client.responses.create(
        model=model, input="Tell me a story.", max_output_tokens=5, stream=True, extra_body=EXACT
    ) as stream:
        events = list(stream)
    names = [event.type for event in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.incomplete"  # vLLM says response.completed; OpenAI names it so
    assert "response.output_text.delta" in names
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert extra(final, "store") is True and final.usage is not None and final.usage.output_tokens == 5
    deadline = time.monotonic() + 10
    while True:
        try:
            stored = openai_client.responses.retrieve(final.id)
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert text_of(stored) == text_of(final)


def test_function_tools_are_forwarded(openai_client: openai.OpenAI, model: str) -> None:
    response = openai_client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        max_output_tokens=3,
        extra_body=SHOW_PROMPT,
    )
    assert [tool.name for tool in response.tools] == ["get_weather"]  # type: ignore[union-attr]
    assert '"name": "get_weather"' in prompt_of(response)
    # A tool call and its output given back as items reach the engine's prompt.
    follow = openai_client.responses.create(
        model=model,
        previous_response_id=response.id,
        input=[
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        max_output_tokens=2,
        extra_body=SHOW_PROMPT,
    )
    prompt = prompt_of(follow)
    assert "sunny, 21 C" in prompt and '"city": "Paris"' in prompt
    kinds = [item.type for item in openai_client.responses.input_items.list(follow.id, order="asc").data]
    assert kinds[-2:] == ["function_call", "function_call_output"]


def test_background_with_polling(openai_client: openai.OpenAI, model: str, database_url: str) -> None:
    queued = openai_client.responses.create(
        model=model, input="Count.", background=True, max_output_tokens=6, extra_body=EXACT
    )
    assert queued.status == "queued" and queued.background is True and queued.output == []
    done = wait_final(openai_client, queued.id)
    assert done.status == "incomplete" and done.background is True
    assert done.usage is not None and done.usage.output_tokens == 6
    assert text_of(done)

    async def ledger() -> list[tuple[str, int, int]]:
        database = Database(database_url)
        try:
            async with database.session() as session:
                rows = await session.execute(
                    select(UsageRecord.endpoint, UsageRecord.completion_tokens, UsageRecord.status).where(
                        UsageRecord.request_id == queued.id
                    )
                )
                return [tuple(row) for row in rows]  # type: ignore[misc]
        finally:
            await database.close()

    deadline = time.monotonic() + 10
    while not (rows := asyncio.run(ledger())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rows == [("POST /v1/responses (background)", 6, 200)]


def test_a_background_response_the_engine_refuses_fails(openai_client: openai.OpenAI, model: str) -> None:
    queued = openai_client.responses.create(
        model=model,
        input=[{"type": "no_such_item", "text": "x"}],  # type: ignore[typeddict-item]
        background=True,
        max_output_tokens=2,
    )
    done = wait_final(openai_client, queued.id, timeout=30)
    assert done.status == "failed" and done.error is not None
    events = list(openai_client.responses.retrieve(queued.id, stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.failed",
    ]


def test_background_stream_resumes_from_any_sequence_number(
    openai_client: openai.OpenAI, replica_b: openai.OpenAI, model: str
) -> None:
    seen = []
    with openai_client.responses.create(
        model=model, input="Go on.", background=True, stream=True, max_output_tokens=24, extra_body=EXACT
    ) as stream:
        for event in stream:
            seen.append(event)
            if len(seen) == 6:
                break
    assert [e.type for e in seen[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert [e.sequence_number for e in seen] == list(range(6))
    response_id = seen[0].response.id  # type: ignore[union-attr]
    # Resumed on the other replica, after the fifth event.
    rest = list(replica_b.responses.retrieve(response_id, stream=True, starting_after=4))
    assert [e.sequence_number for e in rest] == list(range(5, 5 + len(rest)))
    assert rest[0].type == seen[5].type
    assert rest[-1].type == "response.incomplete"
    deltas = [e.delta for e in [*seen[:5], *rest] if e.type == "response.output_text.delta"]
    assert "".join(deltas) == text_of(rest[-1].response)


def test_cancel_a_background_response(openai_client: openai.OpenAI, model: str) -> None:
    queued = openai_client.responses.create(
        model=model, input="A long one.", background=True, max_output_tokens=1800, extra_body=EXACT
    )
    deadline = time.monotonic() + 60
    while openai_client.responses.retrieve(queued.id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    cancelled = openai_client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    time.sleep(1)
    assert openai_client.responses.retrieve(queued.id).status == "cancelled"
    # Cancelling again answers the same; a response that was not in the background cannot be.
    assert openai_client.responses.cancel(queued.id).status == "cancelled"
    foreground = openai_client.responses.create(model=model, input="Hi", max_output_tokens=1)
    with pytest.raises(openai.BadRequestError):
        openai_client.responses.cancel(foreground.id)


def test_delete_then_404(
    openai_client: openai.OpenAI, model: str, gateway_url: str, auth: dict[str, str]
) -> None:
    response = openai_client.responses.create(model=model, input="Hi", max_output_tokens=1)
    deleted = httpx.delete(f"{gateway_url}/v1/responses/{response.id}", headers=auth)
    assert deleted.json() == {"id": response.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.delete(response.id)


def test_another_tenant_gets_404s(
    openai_client: openai.OpenAI, other_tenant: openai.OpenAI, model: str, gateway_url: str
) -> None:
    mine = openai_client.responses.create(model=model, input="Mine.", max_output_tokens=1)
    with pytest.raises(openai.NotFoundError) as caught:
        other_tenant.responses.retrieve(mine.id)
    assert caught.value.status_code == 404
    for call in (
        lambda: other_tenant.responses.input_items.list(mine.id),
        lambda: other_tenant.responses.delete(mine.id),
        lambda: other_tenant.responses.cancel(mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.BadRequestError) as refused:
        other_tenant.responses.create(model=model, input="Hi", previous_response_id=mine.id)
    assert refused.value.code == "previous_response_not_found"
    assert openai_client.responses.retrieve(mine.id).id == mine.id
    unknown = httpx.get(f"{gateway_url}/v1/responses/resp_nope", headers=bearer("sk-not-a-key"))
    assert unknown.status_code == 401
