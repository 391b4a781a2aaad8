"""Relaying the engine's answer to the client, cancelling the engine's work when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import EngineTimeout, EngineUnavailable, sse_error_event

T = TypeVar("T")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (and so the engine request) if the client leaves first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone


class SSERelay(Response):
    """An ASGI response that passes the engine's SSE bytes through unchanged.

    Chunks are not parsed or re-serialised: the engine already speaks OpenAI's SSE
    (`data: {...}`, usage chunk, `data: [DONE]`). When the client disconnects, the
    relay stops and closes the engine connection at once, which makes vLLM abort the
    request instead of generating tokens nobody reads.
    """

    media_type = "text/event-stream"

    def __init__(self, upstream: httpx.Response) -> None:
        # A Response subclass only so that FastAPI hands it to the server untouched.
        self._upstream = upstream
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    await wait_for_disconnect(receive)
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._relay(send)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()

    async def _relay(self, send: Send) -> None:
        try:
            async for chunk in self._upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.TimeoutException:
            tail = sse_error_event(EngineTimeout("The engine stopped sending tokens in time.")) + _DONE
        except httpx.HTTPError:
            tail = (
                sse_error_event(EngineUnavailable("The engine failed in the middle of the stream.")) + _DONE
            )
        else:
            tail = b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})
