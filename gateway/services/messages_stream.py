"""The relay of vLLM's Anthropic SSE stream, read for its usage, with its errors as Anthropic's
events (the envelope itself is `gateway.errors.anthropic_error_body`, shared with every response).

vLLM's stream is Anthropic's own (`event: message_start` ... `event: message_stop`, no `[DONE]`):
its bytes are forwarded as they come. Read on the way: `message_start.message.usage` (the prompt's
tokens) and `message_delta.usage` (the final counts), for the ledger; each `content_block_delta`
(one per token) counts the completion of a stream cut short. An error event of the engine (vLLM
types it `internal_error`) is re-typed as Anthropic types it; a stream that breaks after its first
byte ends with Anthropic's `event: error`. No failover: a Messages stream is not continued on
another replica (vLLM's continuation is a chat-completions feature).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.types import Send

from gateway.admission.outcome import Outcome
from gateway.errors import APIError, EngineUnavailable, anthropic_error_body
from gateway.http.sse import EVENT_END
from gateway.http.streaming import send_chunk
from gateway.protocol.anthropic import ERROR_TYPES, error_body, error_type
from gateway.services.relay import EngineEvents
from gateway.upstreams.stream import UpstreamStream

# vLLM's error types (exception class names, and its stream converter's `internal_error`) and the
# status each stands for: Anthropic's type follows from the status.
_ENGINE_TYPES = {
    "BadRequestError": 400,
    "UnprocessableEntityError": 400,
    "NotFoundError": 404,
    "TooManyRequestsError": 429,
    "InternalServerError": 500,
    "internal_error": 500,
    "ServiceUnavailableError": 503,
}
_ANTHROPIC_TYPES = frozenset(ERROR_TYPES.values()) | {"timeout_error"}
# An engine event longer than this without its end is passed on unread rather than held.
_MAX_HELD_BYTES = 1 << 20


def anthropic_error_event(exc: APIError) -> bytes:
    """An error after the stream's 200 was sent: Anthropic's `event: error`."""
    return _event("error", anthropic_error_body(exc))


def _event(name: str, body: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + EVENT_END


def anthropic_usage(usage: Any) -> dict[str, int] | None:
    """Anthropic's usage as the ledger counts it: every prompt token (Anthropic's `input_tokens`
    leaves out those read from or written to the cache), and the output tokens."""
    if not isinstance(usage, dict):
        return None
    prompt = sum(
        value
        for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        if isinstance(value := usage.get(name), int)
    )
    output = usage.get("output_tokens")
    return {"prompt_tokens": prompt, "completion_tokens": output if isinstance(output, int) else 0}


def usage_of_message(answer: bytes) -> dict[str, int] | None:
    try:
        body = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    return anthropic_usage(body.get("usage")) if isinstance(body, dict) else None


class MessagesUsage:
    """Reads an Anthropic stream's events as they pass: its usage, whether it ended, and whether
    it ended in an error; re-types the engine's error events as Anthropic's."""

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.output_tokens: int | None = None
        self.deltas = 0
        self.done = False
        self.failed = False
        self._held = b""

    @property
    def usage(self) -> dict[str, int] | None:
        """The engine's counts once it gave its final ones (None for a stream cut short)."""
        if self.prompt_tokens is None or self.output_tokens is None:
            return None
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.output_tokens}

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
        return b"".join(self._read(event) + EVENT_END for event in data[: end + 2].split(EVENT_END)[:-1])

    def rest(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def _read(self, event: bytes) -> bytes:
        if event.startswith(b"event: content_block_delta"):
            self.deltas += 1  # the hot path: one per token, not parsed
            return event
        name, _, data = event.partition(b"\ndata: ")
        if name == b"event: message_stop":
            self.done = True
            return event
        if name not in (b"event: message_start", b"event: message_delta", b"event: error"):
            return event
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(body, dict):
            return event
        if name == b"event: error":
            return self._error(body)
        message = body.get("message")
        usage = anthropic_usage(message.get("usage") if isinstance(message, dict) else body.get("usage"))
        if usage is not None:
            if name == b"event: message_start" or usage["prompt_tokens"]:
                self.prompt_tokens = usage["prompt_tokens"]
            if name == b"event: message_delta":
                self.output_tokens = usage["completion_tokens"]
        return event

    def _error(self, body: dict[str, Any]) -> bytes:
        """The engine's error event, typed as Anthropic types it; the stream ends there."""
        self.done = self.failed = True
        error = body.get("error")
        if not isinstance(error, dict):
            return _event("error", error_body(500, "The engine failed while streaming."))[:-2]
        kind = error.get("type")
        if kind in _ANTHROPIC_TYPES:
            return _event("error", body)[:-2]
        status = _ENGINE_TYPES.get(str(kind), 500)
        message = error.get("message")
        return _event("error", error_body(status, str(message or error_type(status))))[:-2]


class MessagesRelay(EngineEvents):
    """Anthropic's SSE stream of the engine, passed through as it comes (see the module's words);
    `on_close` is told how it ended."""

    def __init__(
        self,
        stream: UpstreamStream,
        *,
        usage: MessagesUsage,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
    ) -> None:
        super().__init__(stream, headers, on_close)
        self._usage = usage

    async def pump(self, send: Send) -> Outcome:
        usage = self._usage
        end = await self._stream.run(_Sink(usage, send))
        if end.completed:
            await send_chunk(send, usage.rest(), more=False)
            return Outcome.FAILED if usage.failed else Outcome.COMPLETED
        usage.rest()  # a torn event is dropped; the error says the answer is incomplete
        error = end.error or EngineUnavailable("The engine ended the stream before it was complete.")
        await send_chunk(send, anthropic_error_event(error), more=False)
        return Outcome.FAILED


class _Sink:
    """The upstream stream's bytes, read for usage, on their way to the client."""

    def __init__(self, usage: MessagesUsage, send: Send) -> None:
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
