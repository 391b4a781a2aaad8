"""The parts of a background response's job (responses_background.py) that shape what it stores: the
sink of the engine's events, and the response as shown, with the search tools' items and citation
annotations (point 7 of issue 23) exactly as a foreground response carries them.

The search tools run while the create request is admitted (file_search.py, web_search.py); their
results are what the citations point at, so they travel in the job's payload (`hosted`, with
`verify` when the request asked for the citation verification pass) and the job rebuilds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from gateway.http.sse import EVENT_END
from gateway.services.citation_check import CitationChecks, Verification
from gateway.services.file_search import Searched
from gateway.services.memory_chat import Placement
from gateway.services.memory_responses import shown_memory
from gateway.services.responses_hosted import HostedShift
from gateway.services.responses_items import shown
from gateway.services.responses_redacted import DeltaHold
from gateway.services.responses_stream import ResponseEvents
from gateway.services.vector_core import Result
from gateway.services.web_search import Browsed, Page
from gateway.store.responses import ResponseRow

# The gateway's own first events: response.created, response.queued, then response.in_progress.
OWN_EVENTS = 3

Hosted = Searched | Browsed


def encoded(hosted: Sequence[Hosted]) -> list[dict[str, Any]]:
    """The search tools' runs as JSON, for the job's payload."""
    return [
        {"kind": "file_search" if isinstance(ran, Searched) else "web_search", **dataclasses.asdict(ran)}
        for ran in hosted
    ]


def decoded(raw: Any) -> tuple[Hosted, ...]:
    """The runs `encoded` wrote (none for a job submitted before they were kept)."""
    runs: list[Hosted] = []
    for entry in raw if isinstance(raw, list) else []:
        fields = {key: value for key, value in entry.items() if key != "kind"}
        if entry.get("kind") == "file_search":
            fields["results"] = [Result(**result) for result in fields["results"]]
            runs.append(Searched(**fields))
        else:
            fields["pages"] = [Page(**page) for page in fields["pages"]]
            runs.append(Browsed(**fields))
    return tuple(runs)


def verification_of(
    checks: CitationChecks | None, payload: dict[str, Any], hosted: Sequence[Hosted]
) -> Verification | None:
    """The verification pass the create request asked for, rebuilt for the job."""
    asked = payload.get("verify")
    if checks is None or not isinstance(asked, dict) or not hosted:
        return None
    sources = {key: texts for ran in hosted for key, texts in ran.sources.items()}
    return Verification(checks, asked["method"], sources, str(payload["model"]))


def shower(
    row: ResponseRow, hosted: Sequence[Hosted] = (), memory: Placement | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """How the job shows the engine's response: the search tools' call items and citations added
    once (the sink reads an event the stream re-showed already), then the stored response's fields,
    and with memories placed, the request's own `instructions` and the memories used."""

    def show(body: dict[str, Any]) -> dict[str, Any]:
        output = body.get("output")
        present = (
            {item.get("id") for item in output if isinstance(item, dict)}
            if isinstance(output, list)
            else set()
        )
        for ran in reversed(hosted):  # file_search's item first, as the tools were listed
            if ran.call_id not in present:
                body = ran.apply(body)
        out = shown(
            body,
            response_id=row.id,
            previous_response_id=row.previous_response_id,
            store=True,
            background=True,
            metadata=row.metadata,
            conversation=conversation_of(row.body),
        )
        return shown_memory(out, memory, row.body.get("instructions"))

    return show


def conversation_of(body: dict[str, Any]) -> str | None:
    conversation = body.get("conversation")
    return str(conversation["id"]) if isinstance(conversation, dict) and "id" in conversation else None


class JobSink:
    """The engine's events, renumbered after the gateway's own and held until the next flush; the
    engine's own `response.created` and `response.in_progress` are the gateway's already."""

    def __init__(
        self, events: ResponseEvents, hold: DeltaHold | None = None, hosted: HostedShift | None = None
    ) -> None:
        self.events = events
        # The search tools' call events, ahead of the engine's first (responses_hosted.py).
        self.hosted = hosted
        # Under a PII `store` policy: text deltas held until their part is whole (responses_redacted).
        self.hold = hold
        self.next = OWN_EVENTS
        self.deltas = 0
        self._pending: list[dict[str, Any]] = []

    @property
    def done(self) -> bool:
        return self.events.done

    async def feed(self, chunk: bytes) -> None:
        out = self.events.feed(chunk)
        for raw in out.split(EVENT_END)[:-1]:
            parsed = self.events.parse(raw) if raw.startswith(b"event: ") else None
            if parsed is None or parsed.get("type") in ("response.created", "response.in_progress"):
                continue
            if str(parsed.get("type", "")).endswith(".delta"):
                self.deltas += 1
            self.shifted(parsed)

    def shifted(self, event: dict[str, Any]) -> None:
        for each in self.hosted.around(event) if self.hosted is not None else [event]:
            self.add(each)

    def add(self, event: dict[str, Any]) -> None:
        for ready in self.hold.offer(event) if self.hold is not None else [event]:
            ready["sequence_number"] = self.next
            self.next += 1
            self._pending.append(ready)

    def release(self) -> None:
        """The parts still held when the stream ended, each as its one delta."""
        for ready in self.hold.rest() if self.hold is not None else []:
            ready["sequence_number"] = self.next
            self.next += 1
            self._pending.append(ready)

    def take(self) -> list[dict[str, Any]]:
        pending, self._pending = self._pending, []
        return pending

    def drop_partial(self) -> None:
        self.events.rest()

    async def finish(self) -> None:
        """After the stream: the final event the citation verification pass held back, with its
        verified response (none without the pass), then the parts the PII hold kept."""
        tail = await self.events.release()
        for raw in tail.split(EVENT_END)[:-1]:
            parsed = self.events.parse(raw)
            if parsed is not None:
                self.shifted(parsed)
        self.release()
