"""Watching the client's connection, so that work nobody will read is stopped at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed its connection before the answer was ready (logged as nginx's 499)."""


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def while_connected(receive: Receive, work: Awaitable[T]) -> T | None:
    """Await `work` (a response's sending) in this task until it ends or the client disconnects;
    None when the client left first (`work` is cancelled). One watcher task, no task group: this runs
    once per streamed answer, and anyio's task group and cancel scopes cost more than the watch."""
    current = asyncio.current_task()
    assert current is not None
    ended = gone = False

    def on_disconnect(watcher: asyncio.Future[None]) -> None:
        nonlocal gone
        if ended or watcher.cancelled() or watcher.exception() is not None:
            return
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    watcher.add_done_callback(on_disconnect)
    try:
        result = await work
    except asyncio.CancelledError:
        # Only the cancel this function asked for is absorbed; a cancel from outside goes on.
        if gone and current.uncancel() == 0:
            return None
        raise
    else:
        if gone:  # `work` swallowed the cancel asked for: take it back, so this task is not left cancelling
            current.uncancel()
        return result
    finally:
        ended = True
        watcher.cancel()


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (and so the engine request) and raise ClientGone if the client
    leaves first."""
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
