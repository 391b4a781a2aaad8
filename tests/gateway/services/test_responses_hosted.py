"""The hosted search tools' stream events on their own (responses_hosted.py): a `file_search` and a
`web_search` call put after the leading lifecycle events of an engine's stream, in OpenAI's order,
each event one the openai SDK's own event types accept, one run of sequence numbers, the engine's
items moved past the two calls. The whole stream through the gateway: test_file_search_stream.py."""

from __future__ import annotations

from typing import Any

from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.services.file_search import Searched
from gateway.services.responses_hosted import HostedShift
from gateway.services.vector_core import Result
from gateway.services.web_search import Browsed, Page

_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def _engine_stream() -> list[dict[str, Any]]:
    """What vLLM streams for a one-message answer (abridged), numbered from 0."""
    started = {"id": "resp_1", "object": "response", "created_at": 0, "model": "m", "status": "in_progress"}
    message = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": []}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**started, "output": [{"id": "fs_1"}]}},
        {"type": "response.in_progress", "response": {**started, "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": message},
        {"type": "response.output_text.delta", **where, "delta": "Hi", "logprobs": []},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": {**started, "status": "completed", "output": []}},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def test_two_calls_before_the_engines_items() -> None:
    searched = Searched("fs_1", ["tea"], [Result("file-1", "tea.txt", 0.9, "Green tea.", {})], True)
    browsed = Browsed("ws_1", "tea", [Page("https://tea.example", "Tea", "Tea.")], False, False)
    shift = HostedShift((searched, browsed))
    sent = [out for event in _engine_stream() for out in shift.around(event)]

    assert [e["type"] for e in sent] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in sent] == list(range(len(sent)))
    assert sent[0]["response"]["output"] == []  # a call is announced once, by its own event
    assert [e.get("output_index") for e in sent[2:7]] == [0] * 5
    assert [e.get("output_index") for e in sent[7:12]] == [1] * 5
    assert [e.get("output_index") for e in sent[12:15]] == [2] * 3
    assert sent[2]["item"]["status"] == "in_progress" and sent[2]["item"]["results"] is None
    assert sent[6]["item"]["status"] == "completed" and sent[6]["item"]["results"][0]["file_id"] == "file-1"
    assert [e.get("item_id") for e in sent[8:11]] == ["ws_1"] * 3
    for event in sent[2:15]:  # the SDK's own event types take each (extra fields are not errors)
        parsed = _EVENTS.validate_python(event)
        assert parsed.type == event["type"]
