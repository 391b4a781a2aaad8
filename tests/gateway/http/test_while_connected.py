"""`while_connected` without a task group: the work's own result, None when the client leaves (the
work cancelled), and a cancel or an error from elsewhere passed on unchanged."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from gateway.http.disconnect import while_connected


class _Client:
    """A receive channel the test ends with a disconnect when it wants."""

    def __init__(self) -> None:
        self.left = asyncio.Event()

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_the_work_s_result_when_the_client_stays() -> None:
    client = _Client()

    async def work() -> str:
        await asyncio.sleep(0)
        return "sent"

    before = asyncio.all_tasks()  # this test's, and any other test's left on the session's loop
    assert await while_connected(client.receive, work()) == "sent"
    # Nothing is left pending: the watcher was cancelled and no cancel reaches this task later.
    await asyncio.sleep(0.01)
    assert asyncio.all_tasks() <= before


async def test_none_and_the_work_cancelled_when_the_client_leaves() -> None:
    client = _Client()
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "sent"

    asyncio.get_running_loop().call_later(0.01, client.left.set)
    assert await while_connected(client.receive, work()) is None
    assert cancelled.is_set()
    # The task goes on uncancelled: later awaits are not interrupted.
    await asyncio.sleep(0.01)


async def test_a_client_leaving_as_the_work_ends_changes_nothing() -> None:
    client = _Client()

    async def work() -> str:
        client.left.set()
        await asyncio.sleep(0)
        return "sent"

    assert await while_connected(client.receive, work()) == "sent"
    await asyncio.sleep(0.01)


async def test_a_cancel_the_work_swallowed_is_taken_back() -> None:
    client = _Client()

    async def work() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "finished anyway"
        return "sent"

    asyncio.get_running_loop().call_later(0.01, client.left.set)
    assert await while_connected(client.receive, work()) == "finished anyway"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)


async def test_the_work_s_error_is_raised_as_it_is() -> None:
    client = _Client()

    async def work() -> str:
        raise ValueError("engine")

    with pytest.raises(ValueError, match="engine"):
        await while_connected(client.receive, work())


async def test_a_cancel_from_outside_is_passed_on() -> None:
    client = _Client()
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.sleep(30)
        return "sent"

    task = asyncio.ensure_future(while_connected(client.receive, work()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
