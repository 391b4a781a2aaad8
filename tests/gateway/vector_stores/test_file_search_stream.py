"""`file_search` in a streamed and in a background response, with the real openai SDK (its stream
helper, `client.responses.stream`, builds the response from the events and refuses an output index
announced twice or a content event before its item) and the stand-in engine of fake_engine.py,
which streams as vLLM does: the call's own events in OpenAI's order (`output_item.added`,
`file_search_call.in_progress`, `.searching`, `.completed`, `output_item.done`) after the leading
lifecycle events, one run of sequence numbers, the engine's message at output index 1. The real
engine's stream: test_vector_stores.py."""

from __future__ import annotations

import time
from typing import Any

import openai
from openai.types.responses import FileSearchToolParam, ResponseFileSearchToolCall

from tests.gateway.vector_stores.fake_engine import CHAT
from tests.gateway.vector_stores.stream_checks import check_call_events
from tests.gateway.vector_stores.test_vector_stores_units import fake, gateway, knowledge, new_client

__all__ = ["fake", "gateway", "knowledge", "new_client"]  # the units module's fixtures, shared

QUESTION = "how hot should the water be for green tea"


def _tool(store_id: str) -> FileSearchToolParam:
    return {"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 2}


def test_a_streamed_file_search_sends_its_call_events(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]],
) -> None:
    client, store_id, files = knowledge
    with client.responses.stream(
        model=CHAT, input=QUESTION, tools=[_tool(store_id)], include=["file_search_call.results"]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    call, message = final.output
    assert isinstance(call, ResponseFileSearchToolCall) and message.type == "message"
    check_call_events(events, ["response.created", "response.in_progress"], call.id, QUESTION)
    done = events[6]
    assert done.type == "response.output_item.done" and isinstance(done.item, ResponseFileSearchToolCall)
    assert done.item.results is not None and done.item.results[0].file_id == files["tea.txt"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "An answer."
    # The stream's final response and the stored one are the same, the call first.
    stored = client.responses.retrieve(final.id) if _stored(client, final.id) else None
    assert stored is not None and [i.type for i in stored.output] == ["file_search_call", "message"]
    assert stored.output[0].id == call.id


def test_a_background_response_keeps_the_call_and_its_events(
    knowledge: tuple[openai.OpenAI, str, dict[str, str]],
) -> None:
    client, store_id, _ = knowledge
    queued = client.responses.create(model=CHAT, input=QUESTION, tools=[_tool(store_id)], background=True)
    deadline = time.monotonic() + 60
    while client.responses.retrieve(queued.id).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the background response did not end"
        time.sleep(0.1)
    response = client.responses.retrieve(queued.id)
    assert response.status == "completed", response.error
    assert [item.type for item in response.output] == ["file_search_call", "message"]
    call = response.output[0]
    assert isinstance(call, ResponseFileSearchToolCall) and call.queries == [QUESTION]
    assert call.results is None
    # Its stored events, replayed: the gateway's own three, the call's, then the engine's.
    with client.responses.retrieve(queued.id, stream=True) as stream:
        events: list[Any] = list(stream)
    check_call_events(
        events, ["response.created", "response.queued", "response.in_progress"], call.id, QUESTION
    )
    assert events[-1].response.output[0].id == call.id


def _stored(client: openai.OpenAI, response_id: str) -> bool:
    """A streamed response is stored once its stream has ended (in the background)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.responses.retrieve(response_id)
            return True
        except openai.NotFoundError:
            time.sleep(0.05)
    return False
