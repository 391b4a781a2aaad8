"""What a Responses stream with a `file_search` call must hold (OpenAI's order and numbering)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openai.types.responses import ResponseFileSearchToolCall

CALL_EVENTS = [
    "response.output_item.added",
    "response.file_search_call.in_progress",
    "response.file_search_call.searching",
    "response.file_search_call.completed",
    "response.output_item.done",
]


def check_call_events(events: Sequence[Any], leading: list[str], final_call_id: str, query: str) -> None:
    """The leading lifecycle events, the call's five, then the engine's, its items from index 1."""
    types = [e.type for e in events]
    assert types[: len(leading)] == leading, types
    assert types[len(leading) : len(leading) + 5] == CALL_EVENTS, types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first = events[0]
    assert first.type == "response.created" and first.response.output == []  # no item announced twice
    added, *steps, done = events[len(leading) : len(leading) + 5]
    assert added.type == "response.output_item.added" and added.output_index == 0
    assert isinstance(added.item, ResponseFileSearchToolCall) and added.item.status == "in_progress"
    assert added.item.id == final_call_id and added.item.queries == [query]
    assert [(getattr(s, "item_id", None), getattr(s, "output_index", None)) for s in steps] == [
        (final_call_id, 0)
    ] * 3
    assert done.type == "response.output_item.done" and done.output_index == 0
    assert isinstance(done.item, ResponseFileSearchToolCall) and done.item.status == "completed"
    rest = events[len(leading) + 5 :]
    indexed = [getattr(e, "output_index", None) for e in rest]
    assert rest[-1].type in ("response.completed", "response.incomplete")
    # The engine's items (the message) after the call, numbered as the final response's output.
    final = rest[-1].response.output
    assert final[0].id == final_call_id and len(final) > 1
    assert {i for i in indexed if i is not None} == set(range(1, len(final))), types
