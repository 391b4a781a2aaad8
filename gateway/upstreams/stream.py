"""A streamed answer from the upstream side's point of view: once its first event came, it runs to
its end delivering bytes to whoever relays them, and everything that can go wrong on the way is
handled here, not by the relay: no token within the inter-token gap or the request's deadline (a
watchdog), a torn connection, a missing `[DONE]`; then the stream is continued on another replica
(`Failover`) when it can be, and otherwise ends with an error event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx

from gateway.errors import APIError, EngineTimeout, EngineUnavailable, sse_error_event
from gateway.http.sse import DONE, EVENT_END
from gateway.upstreams.attempt import Attempt
from gateway.upstreams.failover import Failover
from gateway.upstreams.timeouts import Deadline


@dataclass(frozen=True)
class UpstreamRequest:
    """What the upstream side needs to get a request answered: the bytes to send, the parsed
    payload (for prefix affinity and a failover's continuation), and how far to go for it."""

    path: str
    body: bytes
    payload: dict[str, Any]
    model: str
    headers: dict[str, str]
    # Prompt characters hashed for prefix-cache affinity; 0 turns affinity off.
    affinity_chars: int = 0
    # How many times a broken stream may be continued on another replica; 0: never.
    failover_max: int = 0


class EventSink(Protocol):
    """The relay's side of a stream: it takes the bytes as they come and knows whether `[DONE]`
    has passed (after which nothing that breaks matters to the client)."""

    @property
    def done(self) -> bool: ...

    async def feed(self, chunk: bytes) -> None: ...

    def drop_partial(self) -> None:
        """Forget an event torn by a failure: the continuation says it again."""


@dataclass(frozen=True)
class StreamEnd:
    """How a stream ended: `tail` is its last bytes (None: whatever the sink still holds)."""

    completed: bool
    tail: bytes | None = None
    # Why it did not complete, for a relay that words the error event its own way (Anthropic's).
    error: APIError | None = None


class UpstreamStream:
    """A stream that has sent its first event. `run` delivers it to its end; `close` releases the
    upstream connection (an unfinished stream's close makes vLLM abort the request)."""

    def __init__(
        self, attempt: Attempt, *, inter_token_s: float, deadline: Deadline | None, failover: Failover | None
    ) -> None:
        self._attempt = attempt
        self._gap_s = inter_token_s
        self._deadline = deadline
        self._failover = failover
        self._last = time.monotonic()
        self._scope: anyio.CancelScope | None = None
        self._stalled: APIError | None = None

    @property
    def upstream(self) -> str:
        """The upstream that answered first (a failover's continuation may come from another)."""
        return self._attempt.member.name

    @property
    def model(self) -> str:
        """The model of the chain that answered first (the request's, or a fallback's): the one
        the answer is priced by, a failover's continuation included."""
        return self._attempt.target.model

    @property
    def observe(self) -> Callable[[dict[str, Any]], None] | None:
        """What wants to see each parsed event the client is sent (the failover's transcript); the
        relay parses every event anyway, so this costs no second parse."""
        return self._failover.transcript.see if self._failover is not None else None

    async def close(self) -> None:
        await self._attempt.close()

    async def run(self, sink: EventSink) -> StreamEnd:
        async with anyio.create_task_group() as group:
            group.start_soon(self._watchdog)
            end = await self._deliver(sink)
            group.cancel_scope.cancel()
        return end

    async def _deliver(self, sink: EventSink) -> StreamEnd:
        failure = await self._pump(sink, rewrite=None)
        while failure is not None:
            sink.drop_partial()
            resumed = await self._resume(failure, sink.done)
            if isinstance(resumed, StreamEnd):
                return resumed
            failure = await self._pump(sink, rewrite=resumed)
        return StreamEnd(completed=True)

    async def _pump(self, sink: EventSink, rewrite: Failover | None) -> APIError | None:
        """Relay the current attempt to its end; the reason it broke, or None when it finished."""
        attempt = self._attempt
        self._stalled = None
        self._last = time.monotonic()
        failure: APIError | None = None
        with anyio.CancelScope() as scope:  # the watchdog cancels it when the upstream stalls
            self._scope = scope
            try:
                if rewrite is None:  # the hot path: the engine's bytes, as they come
                    await sink.feed(attempt.first)
                    async for chunk in attempt.chunks:
                        self._last = time.monotonic()
                        await sink.feed(chunk)
                else:
                    await self._pump_rewritten(sink, rewrite)
            except httpx.TimeoutException:
                failure = EngineTimeout("The engine stopped sending tokens in time.")
            except httpx.HTTPError:
                failure = EngineUnavailable("The engine failed in the middle of the stream.")
            finally:
                self._scope = None
        if sink.done:
            return None  # whatever broke after [DONE] broke nothing the client needed
        return (
            self._stalled
            or failure
            or EngineUnavailable("The engine ended the stream before it was complete.")
        )

    async def _pump_rewritten(self, sink: EventSink, failover: Failover) -> None:
        attempt = self._attempt
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
            if out:
                await sink.feed(out)

    async def _resume(self, failure: APIError, done: bool) -> Failover | StreamEnd:
        """Another replica's continuation of the stream, or how the stream ends."""
        self._last = float("inf")  # the dispatcher's own clocks bound the failover
        failed = self._attempt
        await failed.close(failed=failure.message)
        failover = self._failover
        if failover is not None and failover.transcript.finished:
            return StreamEnd(True, DONE)  # the answer was whole; only its usage event and [DONE] were lost
        if failover is not None and failover.possible(done):
            try:
                resumed = await failover.resume(failed)
            except APIError as exc:
                failure = exc
            else:
                if isinstance(resumed, bytes):
                    return StreamEnd(True, resumed + DONE)
                self._attempt = resumed
                return failover
        return StreamEnd(False, sse_error_event(failure) + DONE, failure)

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
