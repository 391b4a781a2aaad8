"""Requests from a realtime session through the gateway's own HTTP stack, in process.

A realtime response is a chat completion. Running it through the app itself (not a second code
path) means it is authenticated, rate limited, accounted in the ledger, logged, counted in the
metrics, retried, failed over and transcribed (audio parts) exactly as the same request over HTTP,
with no socket and no serialisation beyond the request body. Cancelling is a client disconnect:
the relay stops reading and the engine aborts the request, as for an HTTP client that leaves.

One difference: each request is marked (`SESSION_SLOT`, an ASGI scope entry only the gateway sets,
never a header) as running under the session's own concurrency slot, so it takes none of its own;
RPM, TPM and budgets apply to it as to any request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Scope

from gateway.limits import SESSION_SLOT

_DONE = object()
_SETTLE_S = 10.0


@dataclass
class LoopbackResponse:
    status: int
    chunks: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


class Loopback:
    """Calls `app` with an HTTP scope derived from the realtime connection's own scope."""

    def __init__(
        self,
        app: ASGIApp,
        connection: Scope,
        headers: Mapping[str, str],
        each: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """`each` gives every request further scope entries (a session opened with an ephemeral
        secret acts as its key: `ACTING_AS`, with a request id of its own)."""
        self._app = app
        self._each = each
        self._base: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "https" if connection.get("scheme") == "wss" else "http",
            "server": connection.get("server"),
            "client": connection.get("client"),
            "root_path": connection.get("root_path", ""),
            "query_string": b"",
            SESSION_SLOT: True,
        }
        self._headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    @contextlib.asynccontextmanager
    async def post(
        self,
        path: str,
        body: bytes,
        cancel: asyncio.Event,
        *,
        content_type: str = "application/json",
        marks: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[LoopbackResponse]:
        """POST `body` to `path`; the response's body arrives chunk by chunk, as the app sends it.
        Setting `cancel` (or leaving the block early) disconnects the request. `marks` are further
        ASGI scope entries only the gateway sets (a batch line's `ACTING_AS`)."""
        scope: Scope = {
            **self._base,
            **(self._each() if self._each is not None else {}),
            **(marks or {}),
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "headers": [
                *self._headers,
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "state": {},
        }
        exchange = _Exchange(body, cancel)
        task = asyncio.ensure_future(exchange.run(self._app, scope))
        try:
            start = await exchange.messages.get()
            if start is _DONE:
                await task  # the app ended without answering: let its exception show
                raise RuntimeError("the gateway answered an internal request with nothing")
            assert isinstance(start, dict) and start["type"] == "http.response.start"
            headers = {
                bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
                for k, v in start.get("headers", ())
            }
            yield LoopbackResponse(int(start["status"]), exchange.chunks(), headers)
        finally:
            exchange.gone.set()
            # The app sees the disconnect and ends; one that does not is cancelled, not waited for.
            await asyncio.wait({task}, timeout=_SETTLE_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _Exchange:
    """One in-process request: its body handed to the app once, then a disconnect when the caller
    cancels or leaves; the app's messages queued for the caller as they are sent."""

    def __init__(self, body: bytes, cancel: asyncio.Event) -> None:
        self._body = body
        self._cancel = cancel
        self._sent = False
        self.gone = asyncio.Event()
        self.messages: asyncio.Queue[Message | object] = asyncio.Queue()

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        finally:
            await self.messages.put(_DONE)

    async def receive(self) -> Message:
        if not self._sent:
            self._sent = True
            return {"type": "http.request", "body": self._body, "more_body": False}
        waiters = [asyncio.ensure_future(self._cancel.wait()), asyncio.ensure_future(self.gone.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self.messages.put(message)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.messages.get()
            if message is _DONE:
                return
            assert isinstance(message, dict)
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                return


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream's `data:` lines, up to `[DONE]`."""
    held = b""
    async for chunk in chunks:
        held += chunk
        while b"\n\n" in held:
            event, held = held.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                with contextlib.suppress(orjson.JSONDecodeError):
                    parsed = orjson.loads(data)
                    if isinstance(parsed, dict):
                        yield parsed


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])
