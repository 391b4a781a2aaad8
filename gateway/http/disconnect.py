"""Watching the client's connection, so that work nobody will read is stopped at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed its connection before the answer was ready (logged as nginx's 499)."""


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def while_connected(
    receive: Receive, work: Awaitable[T], *companions: Callable[[], Coroutine[Any, Any, None]]
) -> T | None:
    """Run `work` (a response's sending) with its `companions` beside it, until it ends or the
    client disconnects; None when the client left first (`work` is cancelled)."""
    result: T | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await wait_for_disconnect(receive)
            group.cancel_scope.cancel()

        group.start_soon(watch)
        for companion in companions:
            group.start_soon(companion)
        result = await work
        group.cancel_scope.cancel()
    return result


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
