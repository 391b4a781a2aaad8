"""The hosted search tools' events in a Responses stream (docs/responses.md, "Hosted tools in a
stream"): the gateway runs `file_search` (and `web_search`) before the engine is called, so the
engine's stream knows nothing of their call items. OpenAI streams each call as its own output item
ahead of the message: `response.output_item.added` (status `in_progress`), then
`response.file_search_call.in_progress`, `.searching` and `.completed` (`web_search_call` alike),
then `response.output_item.done`. `HostedShift` puts those events after the stream's leading
lifecycle events and renumbers what follows, so `sequence_number` stays one run and each engine
item's `output_index` counts the call items before it, as the final response's `output` does.

The leading `response.created` / `response.in_progress` carry no call item (OpenAI's start with an
empty output, and the SDK's stream helper refuses an index announced twice).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

LEADING = frozenset({"response.created", "response.queued", "response.in_progress"})


class HostedRun(Protocol):
    """A search tool's run (file_search.Searched, web_search.Browsed)."""

    def apply(self, body: dict[str, Any]) -> dict[str, Any]: ...


def call_item(ran: HostedRun) -> dict[str, Any]:
    """The run's output item as the final response shows it."""
    item: dict[str, Any] = ran.apply({"output": []})["output"][0]
    return item


def call_events(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each call item's events in OpenAI's order, `output_index` its place (no sequence numbers)."""
    events: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        kind, item_id = str(item["type"]), str(item["id"])
        started = {**copy.deepcopy(item), "status": "in_progress"}
        if kind == "file_search_call":
            started["results"] = None
        events.append({"type": "response.output_item.added", "output_index": index, "item": started})
        for step in ("in_progress", "searching", "completed"):
            events.append({"type": f"response.{kind}.{step}", "output_index": index, "item_id": item_id})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


class HostedShift:
    """One stream's hosted tool events, put in once (see the module's words)."""

    def __init__(self, hosted: Sequence[HostedRun]) -> None:
        items = [call_item(ran) for ran in hosted]
        self._ids = {item["id"] for item in items}
        self._events = call_events(items)
        self._items = len(items)
        self._offset = 0
        self.placed = False

    def around(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to send for one of the engine's: the tools' first, once the leading lifecycle
        events are past; the event itself renumbered and its output index moved past the tools'."""
        if event.get("type") in LEADING and not self.placed:
            response = event.get("response")
            output = response.get("output") if isinstance(response, dict) else None
            if isinstance(output, list) and isinstance(response, dict):
                response["output"] = [i for i in output if not _one_of(i, self._ids)]
            return [event]
        sent: list[dict[str, Any]] = []
        number = event.get("sequence_number")
        if not self.placed:
            self.placed = True
            base = number if isinstance(number, int) and number >= 0 else 0
            for n, tool_event in enumerate(self._events):
                sent.append({**tool_event, "sequence_number": base + n})
            self._offset = len(self._events)
        if isinstance(number, int) and number >= 0:
            event["sequence_number"] = number + self._offset
        index = event.get("output_index")
        if isinstance(index, int):
            event["output_index"] = index + self._items
        sent.append(event)
        return sent


def _one_of(item: Any, ids: set[str]) -> bool:
    return isinstance(item, dict) and item.get("id") in ids
