"""A scripted stand-in for the realtime session's loopback (unit tests of the session's own logic;
the real gateway and engine answer in test_realtime.py and test_realtime_tools.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson

from gateway.realtime.loopback import Loopback, LoopbackResponse
from gateway.realtime.session import RealtimeLimits, RealtimeSession

LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-limit-tokens": "10000",
    "x-ratelimit-remaining-tokens": "9000",
    "x-ratelimit-reset-tokens": "6m0s",
}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def tool_call_stream(name: str, arguments: list[str], call_id: str = "call_1") -> list[dict[str, Any]]:
    """A chat completion stream as vLLM sends a forced function call: the name, then the arguments."""
    first = {"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name}}]}
    pieces = [{"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in arguments]
    return [
        chunk({"role": "assistant"}),
        chunk(first),
        *[chunk(piece) for piece in pieces],
        chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": len(arguments)}},
    ]


def text_stream(words: list[str]) -> list[dict[str, Any]]:
    return [
        *[chunk({"content": word}) for word in words],
        chunk({}, "stop"),
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(words)}},
    ]


class FakeLoopback:
    """Answers each chat completion with the next scripted stream, and keeps the bodies sent."""

    def __init__(self) -> None:
        self.streams: list[list[dict[str, Any]]] = []
        self.bodies: list[dict[str, Any]] = []
        self.transcript = "hello there"

    @contextlib.asynccontextmanager
    async def post(
        self, path: str, body: bytes, cancel: asyncio.Event, **_: Any
    ) -> AsyncIterator[LoopbackResponse]:
        if path == "/v1/audio/transcriptions":
            yield LoopbackResponse(200, _chunks([orjson.dumps({"text": self.transcript})]))
            return
        if path == "/v1/audio/speech":
            yield LoopbackResponse(200, _chunks([bytes(4800)]))
            return
        self.bodies.append(orjson.loads(body))
        stream = self.streams.pop(0)
        raw = [b"data: " + orjson.dumps(event) + b"\n\n" for event in stream] + [b"data: [DONE]\n\n"]
        yield LoopbackResponse(200, _chunks(raw), dict(LIMIT_HEADERS))


async def _chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for piece in chunks:
        yield piece


class Client:
    """A session driven by client events, its server events kept."""

    def __init__(self, limits: RealtimeLimits | None = None) -> None:
        self.loopback = FakeLoopback()
        self.events: list[dict[str, Any]] = []
        self.session = RealtimeSession(
            model="m",
            loopback=cast(Loopback, self.loopback),
            send=self._receive,
            limits=limits or RealtimeLimits(),
        )

    async def _receive(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def send(self, event: dict[str, Any]) -> dict[str, Any]:
        await self.session.feed(orjson.dumps(event))
        return self.events[-1]

    async def until(self, kind: str, count: int = 1) -> dict[str, Any]:
        """The `count`-th event of type `kind`, once it has come."""
        for _ in range(500):
            found = self.of(kind)
            if len(found) >= count:
                return found[count - 1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} in {[e['type'] for e in self.events]}")

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]
