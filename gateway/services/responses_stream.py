"""The Responses API's SSE streams: vLLM's own events relayed (the response object each lifecycle
event carries re-shown as the gateway keeps it), and a background response's stored events replayed
from the store (`starting_after`), on any replica.

vLLM's stream is OpenAI's (`event: response.created` ... `event: response.completed`, each event
with its `sequence_number`, no `[DONE]`). Its deltas pass through unread; only the lifecycle events
(`response.created`, `response.in_progress`, `response.completed`...) are parsed, to put back what
the gateway changed on the way in (`previous_response_id`, `store`, `background`, `metadata`) and to
keep the final response. vLLM ends an incomplete response (max_output_tokens) with
`response.completed` holding `status: incomplete`; OpenAI names that event `response.incomplete`,
and so does the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from starlette.types import Send

from gateway.admission.outcome import Outcome
from gateway.errors import APIError, EngineUnavailable
from gateway.http.sse import EVENT_END, SSE_HEADERS
from gateway.http.streaming import RawStream, send_chunk
from gateway.services.relay import EngineEvents
from gateway.services.responses_hosted import HostedRun, HostedShift
from gateway.store.responses import FINAL, ResponseStore
from gateway.upstreams.stream import UpstreamStream

# The events that carry the whole response object.
_LIFECYCLE = (
    b"event: response.created",
    b"event: response.queued",
    b"event: response.in_progress",
    b"event: response.completed",
    b"event: response.incomplete",
    b"event: response.failed",
)
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
_MAX_HELD_BYTES = 1 << 20


def frame(event: Mapping[str, Any]) -> bytes:
    """One event as OpenAI frames it: its type as the SSE event name, the JSON as data."""
    return (
        b"event: "
        + str(event.get("type", "message")).encode()
        + b"\ndata: "
        + orjson.dumps(event)
        + EVENT_END
    )


def usage_of(body: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The Responses usage as the ledger counts it (prompt and completion tokens)."""
    usage = body.get("usage") if body is not None else None
    if not isinstance(usage, dict):
        return None
    prompt, output = usage.get("input_tokens"), usage.get("output_tokens")
    return {
        "prompt_tokens": prompt if isinstance(prompt, int) else 0,
        "completion_tokens": output if isinstance(output, int) else 0,
    }


def ending_event(event: dict[str, Any]) -> dict[str, Any]:
    """`response.completed` of a response whose status is `incomplete` or `failed` is named as OpenAI
    names it."""
    response = event.get("response")
    if event.get("type") == "response.completed" and isinstance(response, dict):
        status = response.get("status")
        if status in ("incomplete", "failed"):
            event["type"] = f"response.{status}"
    return event


class ResponseEvents:
    """Reads vLLM's Responses stream as it passes: whole events out, the response object of the
    lifecycle events re-shown by `show`, the final response kept. With `finish` (the citation
    verification pass), the final event is held back until `release` has the finished response."""

    def __init__(
        self,
        show: Callable[[dict[str, Any]], dict[str, Any]],
        finish: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
        hosted: Sequence[HostedRun] = (),
    ) -> None:
        self._show = show
        self._finish = finish
        # The hosted search tools' events (responses_hosted.py): every event is then read.
        self._hosted = HostedShift(hosted) if hosted else None
        self.final: dict[str, Any] | None = None
        self.done = False
        self.failed = False
        self._held = b""
        self._last: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk if self._held else chunk
        end = data.rfind(EVENT_END)
        if end < 0:
            if len(data) > _MAX_HELD_BYTES:
                self._held = b""
                return data
            self._held = data
            return b""
        self._held = data[end + 2 :]
        return b"".join(self._read(event) for event in data[: end + 2].split(EVENT_END)[:-1])

    def rest(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _read(self, event: bytes) -> bytes:
        hosted = self._hosted
        if hosted is None and not event.startswith(_LIFECYCLE) and not event.startswith(b"event: error"):
            return event + EVENT_END
        parsed = self.parse(event)
        held = self._finish is not None and self.final is not None
        if parsed is not None and held and parsed.get("response") is self.final:
            self._last = parsed
            return b""
        if parsed is None:
            return event + EVENT_END
        return frame(parsed) if hosted is None else b"".join(frame(e) for e in hosted.around(parsed))

    async def release(self) -> bytes:
        """The held final event, its response finished ("" when none is held)."""
        last, self._last = self._last, None
        if last is None or self._finish is None or self.final is None:
            return b""
        self.final = last["response"] = await self._finish(self.final)
        if self._hosted is not None:
            return b"".join(frame(e) for e in self._hosted.around(last))
        return frame(last)

    def parse(self, event: bytes) -> dict[str, Any] | None:
        """One event's JSON, its response re-shown (None when it is not JSON)."""
        _, _, data = event.partition(b"data: ")
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict):
            return None
        response = body.get("response")
        if isinstance(response, dict):
            body["response"] = self._show(response)
        body = ending_event(body)
        kind = body.get("type")
        if kind in TERMINAL:
            self.done = True
            self.failed = kind in ("response.failed", "error")
            if isinstance(body.get("response"), dict):
                self.final = body["response"]
        return body


class ResponsesRelay(EngineEvents):
    """vLLM's Responses stream to the client (see the module's words); `on_close` is told how it
    ended and `on_final` given the final response (to store it)."""

    def __init__(
        self,
        stream: UpstreamStream,
        events: ResponseEvents,
        *,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
    ) -> None:
        super().__init__(stream, headers, on_close)
        self._events = events

    async def pump(self, send: Send) -> Outcome:
        events = self._events
        end = await self._stream.run(_Sink(events, send))
        if end.completed:
            await send_chunk(send, events.rest(), more=False)
            return Outcome.FAILED if events.failed or not events.done else Outcome.COMPLETED
        events.rest()
        error = end.error or EngineUnavailable("The engine ended the stream before it was complete.")
        await send_chunk(send, error_event(error), more=False)
        return Outcome.FAILED


def error_event(error: APIError) -> bytes:
    """OpenAI's `error` event of the Responses stream (the envelope's fields at its top)."""
    inner = error.body().get("error", {})
    event = {
        "type": "error",
        "code": inner.get("code"),
        "message": inner.get("message", str(error)),
        "param": inner.get("param"),
        "sequence_number": -1,
    }
    return frame(event)


class _Sink:
    def __init__(self, events: ResponseEvents, send: Send) -> None:
        self._events = events
        self._send = send

    @property
    def done(self) -> bool:
        return self._events.done

    async def feed(self, chunk: bytes) -> None:
        out = self._events.feed(chunk)
        if out:
            await send_chunk(self._send, out)
        last = await self._events.release()
        if last:
            await send_chunk(self._send, last)

    def drop_partial(self) -> None:
        self._events.rest()


class StoredEventsStream(RawStream):
    """A background response's events from the store, after `starting_after`, until its last one:
    written by the replica running it, read here every `poll_s` (any replica may serve this)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        store: ResponseStore,
        response_id: str,
        starting_after: int,
        *,
        poll_s: float,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
    ) -> None:
        super().__init__(SSE_HEADERS, headers, on_close)
        self._store = store
        self._id = response_id
        self._after = starting_after
        self._poll_s = poll_s

    async def pump(self, send: Send) -> Outcome:
        ending = False
        while True:
            events = await self._store.events_after(self._id, self._after)
            for event in events:
                self._after = int(event["sequence_number"])
                await send_chunk(send, frame(event))
                if event.get("type") in TERMINAL:
                    await send_chunk(send, b"", more=False)
                    return Outcome.COMPLETED
            if events:
                continue
            if ending:
                await send_chunk(send, b"", more=False)
                return Outcome.COMPLETED
            # No more now: a final status means what was written is all there is (read once more,
            # for events committed together with it); otherwise wait for the runner's next batch.
            status = await self._store.status(self._id)
            if status is None or status in FINAL:
                ending = True
                continue
            await asyncio.sleep(self._poll_s)
