"""Relaying the engine's answer to the client, cancelling the engine's work when the client leaves."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any

import anyio
import httpx
import orjson
from starlette.types import Send

from gateway.admission.outcome import Outcome
from gateway.errors import APIError, EngineTimeout, EngineUnavailable, sse_error_event
from gateway.http.sse import DONE, EVENT_END, SSE_HEADERS
from gateway.http.streaming import RawStream, send_chunk
from gateway.upstreams.dispatch import Attempt
from gateway.upstreams.failover import Failover, Transcript
from gateway.upstreams.timeouts import Deadline

# An engine event longer than this without its end is passed on unread rather than held.
_MAX_HELD_BYTES = 1 << 20
# StreamUsage._read's answer for "forward the event as it came" (compared by identity, never copied).
_SAME = b"\x00same"


class StreamUsage:
    """Reads the usage of a stream as its events pass, without changing the events it forwards.

    The engine's final usage event (`"choices": []`) gives the real counts; it is held back when
    the client did not ask for it (the gateway asked on its behalf). Until then, and for a stream
    cut short, the generated tokens are counted as the engine streams them: one event per token
    for each choice.
    """

    def __init__(
        self,
        *,
        forward_usage: bool,
        transcript: Transcript | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.forward_usage = forward_usage
        # Fields added to the final usage event (what the adapters derived); None: no event is rewritten.
        self.extra = extra
        self.usage: dict[str, Any] | None = None
        self.completion_tokens = 0
        self.done = False
        self.transcript = transcript
        self._held = b""

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

    def _read(self, event: bytes) -> bytes | None:
        """Take what the event says about usage. What goes on to the client: `_SAME` (the event
        unchanged), a rewritten event (the final usage with `extra`), or None (held back)."""
        if not event.startswith(b"data: {"):
            if event == b"data: [DONE]":
                self.done = True
            return _SAME
        try:
            body = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return _SAME
        if self.transcript is not None:
            self.transcript.see(body)
        choices = body.get("choices")
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            if choices == []:
                if not self.forward_usage:
                    return None
                if self.extra:
                    usage.update(self.extra)
                    return b"data: " + orjson.dumps(body)
        if isinstance(choices, list):
            self.completion_tokens += sum(1 for choice in choices if _carries_token(choice))
        return _SAME


def _carries_token(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):  # chat: the first event per choice only names the role
        return bool(delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"))
    return bool(choice.get("text"))


class SSERelay(RawStream):
    """An ASGI response that passes the engine's SSE bytes through unchanged.

    Events are not re-serialised: the engine already speaks OpenAI's SSE (`data: {...}`,
    usage chunk, `data: [DONE]`); they are forwarded whole, read on the way for usage. When
    the client disconnects, the relay stops and closes the engine connection at once, which
    makes vLLM abort the request instead of generating tokens nobody reads. A stream that breaks
    (the connection torn, no token within `inter_token_s`, the request's deadline passed, no
    `[DONE]`) is continued on another replica by `failover` when it can, and otherwise ends with
    an error event and `[DONE]`. `on_close` is told how the stream ended.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        attempt: Attempt,
        *,
        headers: Mapping[str, str] | None = None,
        usage: StreamUsage | None = None,
        on_close: Callable[[Outcome], None] | None = None,
        inter_token_s: float = 600.0,
        deadline: Deadline | None = None,
        failover: Failover | None = None,
    ) -> None:
        super().__init__(SSE_HEADERS, headers, on_close)
        self._attempt = attempt
        self._usage = usage or StreamUsage(forward_usage=True)
        self._gap_s = inter_token_s
        self._deadline = deadline
        self._failover = failover
        self._last = time.monotonic()
        self._scope: anyio.CancelScope | None = None
        self._stalled: APIError | None = None

    def companions(self) -> tuple[Callable[[], Coroutine[Any, Any, None]], ...]:
        return (self._watchdog,)

    async def finish(self) -> None:
        await self._attempt.close()

    async def pump(self, send: Send) -> Outcome:
        failure = await self._pump(send, rewrite=None)
        while failure is not None:
            self._usage.rest()  # a torn event is dropped: the continuation says it again
            resumed = await self._resume(failure)
            if isinstance(resumed, tuple):
                tail, outcome = resumed
                await send_chunk(send, tail, more=False)
                return outcome
            failure = await self._pump(send, rewrite=resumed)
        await send_chunk(send, self._usage.rest(), more=False)
        return Outcome.COMPLETED

    async def _pump(self, send: Send, rewrite: Failover | None) -> APIError | None:
        """Relay the current attempt to its end; the reason it broke, or None when it finished."""
        attempt, usage = self._attempt, self._usage
        self._stalled = None
        self._last = time.monotonic()
        failure: APIError | None = None
        with anyio.CancelScope() as scope:  # the watchdog cancels it when the upstream stalls
            self._scope = scope
            try:
                if rewrite is None:  # the hot path: the engine's bytes, as they come
                    events = usage.feed(attempt.first)
                    if events:
                        await send_chunk(send, events)
                    async for chunk in attempt.chunks:
                        self._last = time.monotonic()
                        events = usage.feed(chunk)
                        if events:
                            await send_chunk(send, events)
                else:
                    await self._pump_rewritten(send, rewrite)
            except httpx.TimeoutException:
                failure = EngineTimeout("The engine stopped sending tokens in time.")
            except httpx.HTTPError:
                failure = EngineUnavailable("The engine failed in the middle of the stream.")
            finally:
                self._scope = None
        if usage.done:
            return None  # whatever broke after [DONE] broke nothing the client needed
        return (
            self._stalled
            or failure
            or EngineUnavailable("The engine ended the stream before it was complete.")
        )

    async def _pump_rewritten(self, send: Send, failover: Failover) -> None:
        attempt, usage = self._attempt, self._usage
        pending = b""

        async def chunks() -> AsyncIterator[bytes]:
            yield attempt.first
            async for chunk in attempt.chunks:
                yield chunk

        async for chunk in chunks():
            self._last = time.monotonic()
            data = pending + chunk
            end = data.rfind(EVENT_END)
            if end < 0:
                pending = data
                continue
            pending = data[end + 2 :]
            out = failover.rewrite(data[: end + 2])
            events = usage.feed(out) if out else b""
            if events:
                await send_chunk(send, events)

    async def _resume(self, failure: APIError) -> Failover | tuple[bytes, Outcome]:
        """Another replica's continuation of the stream, or the bytes that end it."""
        self._last = float("inf")  # the dispatcher's own clocks bound the failover
        failed = self._attempt
        await failed.close(failed=failure.message)
        if self._failover is not None and self._failover.transcript.finished:
            return DONE, Outcome.COMPLETED  # the answer was whole; only its usage event and [DONE] were lost
        if self._failover is not None and self._failover.possible(self._usage.done):
            try:
                resumed = await self._failover.resume(failed)
            except APIError as exc:
                failure = exc
            else:
                if isinstance(resumed, bytes):
                    return resumed + DONE, Outcome.COMPLETED
                self._attempt = resumed
                return self._failover
        return sse_error_event(failure) + DONE, Outcome.FAILED

    async def _watchdog(self) -> None:
        """Cancels the current pump when no token came within the gap, or the deadline passed:
        one sleeping task per stream, woken about once per gap, rather than a timer per chunk."""
        while True:
            now = time.monotonic()
            due = self._last + self._gap_s
            if self._deadline is not None:
                due = min(due, self._deadline.at)
            if now >= due and self._scope is None:
                await anyio.sleep(self._gap_s)  # between attempts: the dispatcher's clocks rule
                continue
            if now >= due and self._scope is not None:
                past_deadline = self._deadline is not None and now >= self._deadline.at
                self._stalled = EngineTimeout(
                    "The request took longer than its time limit."
                    if past_deadline
                    else f"The engine sent no token for {self._gap_s:g}s."
                )
                self._scope.cancel()
                self._last = float("inf") if past_deadline else now
                if past_deadline:
                    return
            await anyio.sleep(min(max(0.01, due - now), self._gap_s))
