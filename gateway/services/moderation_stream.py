"""A streamed answer moderated sentence by sentence: the engine's events are held until the text
they carry ends a sentence (or grows past `_MAX_PENDING` characters), that text is judged, and
the held events go on only when it passes. The first flagged sentence under a `block` policy ends
the stream: its events are dropped, each choice gets a last chunk with `finish_reason:
"content_filter"`, then `data: [DONE]`, and the engine's stream is closed (vLLM aborts)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import orjson
from starlette.types import Send

from gateway.admission.outcome import Outcome
from gateway.http.sse import DONE, EVENT_END, sse_event
from gateway.http.streaming import send_chunk
from gateway.services.relay import SSERelay, StreamUsage
from gateway.upstreams.stream import UpstreamStream

# Where a sentence ends: the text before is judged once one of these arrives.
_SENTENCE_END = re.compile(r"[.!?;\n\u3002\uff01\uff1f]")
# Text held without a sentence end is judged anyway past this length.
_MAX_PENDING = 400

# Judges a span of the answer; True: cut the stream here.
Judge = Callable[[str], Awaitable[bool]]


class ModeratedRelay(SSERelay):
    """`SSERelay` with the answer's text judged before the client sees it."""

    def __init__(
        self,
        stream: UpstreamStream,
        *,
        usage: StreamUsage,
        judge: Judge,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
    ) -> None:
        super().__init__(stream, usage=usage, headers=headers, on_close=on_close)
        self._judge = judge

    @classmethod
    def around(cls, relay: SSERelay, judge: Judge) -> ModeratedRelay:
        """`relay` (not started yet) with its text judged: the same stream, usage, headers and close."""
        moderated = cls(relay._stream, usage=relay._usage, judge=judge, on_close=relay._on_close)
        moderated.raw_headers = relay.raw_headers
        return moderated

    async def pump(self, send: Send) -> Outcome:
        sink = _GuardedSink(self._usage, send, self._judge)
        completed = True
        with anyio.CancelScope() as scope:
            sink.scope = scope
            end = await self._stream.run(sink)
            completed = end.completed
            tail = self._usage.release() + (end.tail if end.tail is not None else self._usage.rest())
            await sink.take(tail, final=True)
        if sink.cut:
            await send_chunk(send, sink.ending() + DONE, more=False)
            return Outcome.COMPLETED
        await send_chunk(send, b"", more=False)
        return Outcome.COMPLETED if completed else Outcome.FAILED


class _GuardedSink:
    def __init__(self, usage: StreamUsage, send: Send, judge: Judge) -> None:
        self._usage = usage
        self._send = send
        self._judge = judge
        self.scope: anyio.CancelScope | None = None
        self.cut = False
        self._held: list[bytes] = []
        self._pending: dict[int, str] = {}
        # The last chunk's id, created, model and object, and the choices seen: the cut's last chunks.
        self._last: dict[str, Any] = {}
        self._choices: set[int] = set()

    @property
    def done(self) -> bool:
        return self._usage.done

    async def feed(self, chunk: bytes) -> None:
        if not self.cut:
            await self.take(self._usage.feed(chunk))

    def drop_partial(self) -> None:
        self._usage.rest()

    async def take(self, events: bytes, *, final: bool = False) -> None:
        if self.cut:
            return
        if events:
            for event in events.split(EVENT_END):
                self._read(event)
            self._held.append(events)
        text = " ".join(self._pending.values())
        if not final and not _SENTENCE_END.search(text) and len(text) < _MAX_PENDING and text:
            return  # mid-sentence: hold on
        if text.strip() and await self._judge(text):
            self.cut = True
            self._held.clear()
            if self.scope is not None and not final:
                self.scope.cancel()
            return
        self._pending.clear()
        held, self._held = b"".join(self._held), []
        if held:
            await send_chunk(self._send, held)

    def _read(self, event: bytes) -> None:
        if not event.startswith(b"data: {"):
            return
        try:
            body = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return
        choices = body.get("choices")
        if not isinstance(choices, list):
            return
        self._last = {key: body.get(key) for key in ("id", "object", "created", "model")}
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = int(choice.get("index") or 0)
            self._choices.add(index)
            delta = choice.get("delta")
            piece = _delta_text(delta) if isinstance(delta, dict) else choice.get("text")
            if isinstance(piece, str) and piece:
                self._pending[index] = self._pending.get(index, "") + piece

    def ending(self) -> bytes:
        """Each choice's last chunk: no more text, `finish_reason: "content_filter"`."""
        chat = self._last.get("object") != "text_completion"
        out = b""
        for index in sorted(self._choices or {0}):
            choice: dict[str, Any] = {"index": index, "logprobs": None, "finish_reason": "content_filter"}
            if chat:
                choice["delta"] = {}
            else:
                choice["text"] = ""
            out += sse_event({**self._last, "choices": [choice]})
        return out


def _delta_text(delta: dict[str, Any]) -> Any:
    """A chat delta's text: its content, or its reasoning (shown to the client too, so judged)."""
    return delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content")
