"""Relaying the engine's answer to the client, cancelling the engine's work when the client leaves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.types import Send

from gateway.admission.outcome import Outcome
from gateway.errors import sse_error_event
from gateway.http.sse import EVENT_END, SSE_HEADERS
from gateway.http.streaming import RawStream, send_chunk
from gateway.services.confidence import StreamConfidence
from gateway.services.reasoning import StreamReasoning
from gateway.upstreams.http_api import engine_stream_error
from gateway.upstreams.stream import UpstreamStream

# An engine event longer than this without its end is passed on unread rather than held.
_MAX_HELD_BYTES = 1 << 20
# StreamUsage._read's answer for "forward the event as it came" (compared by identity, never copied).
_SAME = b"\x00same"
# StreamUsage._take's answer for "forward it as it came, and keep the terminal events held": another
# choice's token while one choice has finished (n > 1).
_PASS = b"\x00pass"


class StreamUsage:
    """Reads the usage of a stream as its events pass, changing only the events that need it.

    The engine's final usage event (`"choices": []`) gives the real counts; it is held back when
    the client did not ask for it (the gateway asked on its behalf). What else it carries
    (`system_fingerprint`, vLLM's `metrics`) then goes onto the stream's terminal events (those
    with a `finish_reason`), held from their arrival to the usage event's (the other choices' events
    pass meanwhile): where vLLM puts the fingerprint when usage is not asked for, so the client gets
    what it would from vLLM directly.
    Until then, and for a stream cut short, the generated tokens are counted as the engine streams
    them: one event per token for each choice. An error event of the engine (vLLM's `type` is a
    class name, its `code` an integer) is re-shaped into OpenAI's envelope.
    """

    def __init__(
        self,
        *,
        forward_usage: bool,
        observe: Callable[[dict[str, Any]], None] | None = None,
        extra: dict[str, Any] | None = None,
        reasoning: StreamReasoning | None = None,
        confidence: StreamConfidence | None = None,
    ) -> None:
        self.forward_usage = forward_usage
        # Chat's confidence extension: logprobs tallied and trimmed, the result on the usage chunk.
        self._confidence = confidence
        # Chat's reasoning under both its names, and counted when the engine did not (reasoning.py).
        self._reasoning = reasoning
        # Fields added to the final usage event (what the adapters derived); None: no event is rewritten.
        self.extra = extra
        self.usage: dict[str, Any] | None = None
        self.completion_tokens = 0
        self.done = False
        # Who else reads each parsed event (a failover's transcript): one parse serves both.
        self._observe = observe
        self._held = b""
        # Terminal events held until the usage event says what to add to them: (as sent, parsed).
        self._finals: list[tuple[bytes, dict[str, Any]]] = []
        # The event being read, re-encoded when it was changed (its reasoning aliased or counted).
        self._changed: bytes | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The complete events of `chunk` (and of what came before) that the client should get."""
        data = self._held + chunk if self._held else chunk
        end = data.rfind(EVENT_END)
        if end < 0:
            if len(data) > _MAX_HELD_BYTES:
                self._held = b""
                return data
            self._held = data
            return b""
        self._held = data[end + 2 :]
        events = data[: end + 2]
        if events.count(EVENT_END) == 1:
            single = self._read(events[:-2])
            if single is None:
                return b""
            return events if single is _SAME else single + EVENT_END
        kept = [(self._read(event), event) for event in events.split(EVENT_END)[:-1]]
        return b"".join(
            (event if out is _SAME else out) + EVENT_END for out, event in kept if out is not None
        )

    def rest(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def release(self) -> bytes:
        """The terminal events still held (a stream that ended without its usage event), as sent."""
        return b"".join(event + EVENT_END for event in self._released(None))

    def _read(self, event: bytes) -> bytes | None:
        """The event's part in the stream: what goes on to the client, terminal events held
        before it included: `_SAME` (the event unchanged), rewritten bytes, or None (held back)."""
        out = self._take(event)
        if out is _PASS:
            return self._changed or _SAME
        if self._finals and out is not None:
            return EVENT_END.join([*self._released(None), event if out is _SAME else out])
        return out

    def _take(self, event: bytes) -> bytes | None:
        if not event.startswith(b"data: {"):
            if event == b"data: [DONE]":
                self.done = True
            return _SAME
        try:
            body = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return _SAME
        self._changed = None
        if self._seen(body):
            event = self._changed = b"data: " + orjson.dumps(body)
        if self._observe is not None:
            self._observe(body)
        if event.startswith(b'data: {"error"'):
            return _reshaped_error(body)
        choices = body.get("choices")
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            if self._completed(body, usage):
                event = self._changed = b"data: " + orjson.dumps(body)
            if choices == []:
                return self._usage_event(body, usage)
        if isinstance(choices, list):
            self.completion_tokens += sum(1 for choice in choices if _carries_token(choice))
            if not self.forward_usage and any(_finishes(choice) for choice in choices):
                self._finals.append((event, body))
                return None
            return _PASS if choices else self._changed or _SAME
        return self._changed or _SAME

    def _seen(self, body: dict[str, Any]) -> bool:
        """Whether the chunk changed as its reasoning and confidence are read."""
        changed = self._reasoning is not None and self._reasoning.see(body)
        return (self._confidence is not None and self._confidence.see(body)) or changed

    def _completed(self, body: dict[str, Any], usage: dict[str, Any]) -> bool:
        """Whether the usage chunk changed: reasoning tokens counted, the confidence added."""
        changed = self._reasoning is not None and self._reasoning.fill(usage)
        last = body.get("choices") == [] and self._confidence is not None
        return (last and self._confidence is not None and self._confidence.finish(body)) or changed

    def _usage_event(self, body: dict[str, Any], usage: dict[str, Any]) -> bytes | None:
        if not self.forward_usage:
            carried = {key: value for key, value in body.items() if key not in _CHUNK_KEYS}
            finals = self._released(carried)
            return EVENT_END.join(finals) if finals else None
        if self.extra:
            usage.update(self.extra)
            return b"data: " + orjson.dumps(body)
        return self._changed or _SAME

    def _released(self, carried: dict[str, Any] | None) -> list[bytes]:
        """The held terminal events, with `carried` (the usage event's other fields) added."""
        finals, self._finals = self._finals, []
        if not carried:
            return [event for event, _ in finals]
        return [b"data: " + orjson.dumps({**carried, **_set(body)}) for _, body in finals]


# The fields every chunk has; any other field of the usage event travels to the terminal events.
_CHUNK_KEYS = frozenset({"id", "object", "created", "model", "choices", "usage"})


def _set(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _finishes(choice: Any) -> bool:
    return isinstance(choice, dict) and choice.get("finish_reason") is not None


def _reshaped_error(body: dict[str, Any]) -> bytes:
    """An engine's error event in OpenAI's envelope; `_SAME` when it already is in it."""
    error = body.get("error")
    reshaped = engine_stream_error(error) if isinstance(error, dict) else None
    return _SAME if reshaped is None else sse_error_event(reshaped)[:-2]


def _carries_token(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):  # chat: the first event per choice only names the role
        return bool(
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("reasoning")
            or delta.get("reasoning_content")
        )
    return bool(choice.get("text"))


class EngineEvents(RawStream):
    """An answer of SSE events pumped from an engine's `UpstreamStream`: the relays of chat,
    Anthropic's Messages, the Responses API and spoken answers. However the answer ends (the client
    gone included), the engine's stream is closed, which makes vLLM abort the request."""

    media_type = "text/event-stream"

    def __init__(
        self,
        stream: UpstreamStream,
        headers: Mapping[str, str] | None,
        on_close: Callable[[Outcome], None] | None,
    ) -> None:
        super().__init__(SSE_HEADERS, headers, on_close)
        self._stream = stream

    async def finish(self) -> None:
        await self._stream.close()


class SSERelay(EngineEvents):
    """An ASGI response that passes the engine's SSE bytes through unchanged.

    Events are not re-serialised: the engine already speaks OpenAI's SSE (`data: {...}`, usage
    chunk, `data: [DONE]`); they are forwarded whole, read on the way for usage. The relay only
    pumps bytes, watches the client and feeds usage: when the client disconnects it stops, and the
    upstream connection is closed at once, which makes vLLM abort the request. What breaks on the
    upstream side (stalls, torn connections, continuing elsewhere) is the `UpstreamStream`'s to
    handle. `on_close` is told how the stream ended; `on_complete` runs when the engine's answer
    ran to its end, before the last events (usage, `[DONE]`) leave, so that what it records (a
    stored completion) is there when the client, having read `[DONE]`, asks for it.
    """

    def __init__(
        self,
        stream: UpstreamStream,
        *,
        usage: StreamUsage,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(stream, headers, on_close)
        self._usage = usage
        self._on_complete = on_complete

    async def pump(self, send: Send) -> Outcome:
        end = await self._stream.run(_ClientSink(self._usage, send))
        tail = self._usage.release() + (end.tail if end.tail is not None else self._usage.rest())
        if end.completed and self._on_complete is not None:
            self._on_complete()
        await send_chunk(send, tail, more=False)
        return Outcome.COMPLETED if end.completed else Outcome.FAILED


class _ClientSink:
    """The upstream stream's bytes, read for usage, on their way to the client."""

    def __init__(self, usage: StreamUsage, send: Send) -> None:
        self._usage = usage
        self._send = send

    @property
    def done(self) -> bool:
        return self._usage.done

    async def feed(self, chunk: bytes) -> None:
        events = self._usage.feed(chunk)
        if events:
            await send_chunk(self._send, events)

    def drop_partial(self) -> None:
        self._usage.rest()
