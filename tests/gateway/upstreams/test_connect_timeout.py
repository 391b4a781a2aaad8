"""The engine client's connect timeout under a stalled event loop (real sockets, real aiohttp).

The cause of the 3 s connect timeouts seen when 20 streams opened at once on an overloaded machine
(docs/performance.md): when the event loop is held for longer than the connect timeout (CPU
starvation, a long callback), the timer fires in the same pass as, or before, the socket's
completion, and every connect in progress is reported as timed out although the kernel had
accepted each one. aiohttp's plain `TCPConnector` and httpx's own pool both do this; the
gateway's `EngineConnector` gives a connect a few loop passes after its timer before giving up.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import uvloop

from gateway.clients import engine_client
from gateway.settings.schema import Settings
from gateway.upstreams.transport import GRACE_PASSES, EngineConnector, EngineTransport, within

CONNECT_S = 0.5
STALL_S = 1.2  # longer than the connect timeout


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # a client that gave up
    finally:
        writer.close()


def _transport() -> EngineTransport:
    return EngineTransport(limits=httpx.Limits(max_connections=64, keepalive_expiry=30.0))


async def _connects_through_a_stall(
    transport: httpx.AsyncBaseTransport | None, streams: int = 20
) -> list[str]:
    """`streams` requests start connecting, then the loop is held for STALL_S: what each got."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/health"
    extra: dict[str, Any] = {"transport": transport} if transport is not None else {}
    async with server, httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=CONNECT_S), **extra) as client:
        tasks = [asyncio.create_task(client.get(url)) for _ in range(streams)]
        await asyncio.sleep(0.001)  # every request reaches its socket connect, none completes
        time.sleep(STALL_S)  # noqa: ASYNC251 (the point: the loop is starved: nothing runs, the kernel completes the connects)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    return [type(r).__name__ if isinstance(r, BaseException) else str(r.status_code) for r in results]


async def test_a_stalled_loop_does_not_time_out_connects_the_kernel_completed() -> None:
    assert await _connects_through_a_stall(_transport()) == ["200"] * 20


def test_the_same_on_uvloop_which_the_gateway_runs_on() -> None:
    """libuv runs expired timers before it polls for I/O: without the grace, all 20 fail."""
    assert uvloop.run(_connects_through_a_stall(_transport())) == ["200"] * 20


async def test_httpx_pool_the_former_default_loses_them() -> None:
    """The reproduction is real: httpx's own pool (the former default) loses every connect."""
    assert await _connects_through_a_stall(None) == ["ConnectTimeout"] * 20


def _stalling_socket_factory() -> tuple[list[int], Callable[[Any], socket.socket]]:
    """aiohttp's socket factory, which holds the loop once, in the pass after the first socket's
    connect started: the stall lands exactly while connects are in progress."""
    made: list[int] = []

    def factory(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        if not made:
            asyncio.get_running_loop().call_soon(time.sleep, STALL_S)
        made.append(1)
        return socket.socket(family=family, type=kind, proto=proto)

    return made, factory


@pytest.mark.parametrize("connector", [EngineConnector, aiohttp.TCPConnector])
async def test_connects_in_progress_when_the_loop_stalls(connector: type[aiohttp.TCPConnector]) -> None:
    """Deterministic: the stall starts while 20 connects are in progress. aiohttp's own connector
    reports each as timed out; the gateway's completes them."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/health"
    made, factory = _stalling_socket_factory()
    timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_S, sock_read=10)
    async with (
        server,
        aiohttp.ClientSession(connector=connector(socket_factory=factory), timeout=timeout) as s,
    ):

        async def get() -> str:
            try:
                async with s.get(url) as response:
                    return str(response.status)
            except aiohttp.ConnectionTimeoutError:
                return "timeout"

        outcome = await asyncio.gather(*(get() for _ in range(20)))
    assert len(made) == 20
    assert outcome == (["200"] * 20 if connector is EngineConnector else ["timeout"] * 20)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: the kernel drops further SYNs, so a connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    try:
        yield port
    finally:
        for s in [*fillers, listener]:
            s.close()


async def test_a_host_that_does_not_answer_still_times_out_on_time(full_backlog: int) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=CONNECT_S), transport=_transport()) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            await c.get(f"http://127.0.0.1:{full_backlog}/health")
        assert CONNECT_S <= time.monotonic() - started < CONNECT_S + 0.5


async def test_within_gives_a_finished_task_its_result_after_the_timer() -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[str] = loop.create_future()
    # Completes a few passes after the timer would have fired: inside the grace.
    loop.call_later(0.05, lambda: loop.call_soon(ready.set_result, "connected"))

    async def waits() -> str:
        return await ready

    task = asyncio.ensure_future(waits())
    time.sleep(0.1)  # noqa: ASYNC251 (on purpose: the completion and the timer land together)
    assert await within(task, 0.01) == "connected"


async def test_within_cancels_what_never_finishes() -> None:
    never = asyncio.ensure_future(asyncio.sleep(30))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(never, 0.05)
    assert never.cancelled() and time.monotonic() - started < 0.5
    assert GRACE_PASSES < 100  # a host that never answers is not kept waiting by the grace


async def test_cancelling_the_request_cancels_its_connect() -> None:
    never = asyncio.ensure_future(asyncio.sleep(30))
    waiting = asyncio.ensure_future(within(never, 10))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0)
    assert never.cancelled()


async def test_the_default_engine_client_runs_on_this_connector() -> None:
    settings = Settings(connect_timeout_s=2.0, max_connections=7)
    assert settings.engine_transport == "aiohttp"
    async with engine_client(settings) as client:
        transport = client._transport
        assert isinstance(transport, EngineTransport)
        session = transport.get_client()
        try:
            assert isinstance(session.connector, EngineConnector)
            assert isinstance(session.connector, aiohttp.TCPConnector)
            assert session.connector.limit == 7 and session.connector.limit_per_host == 0
        finally:
            await session.close()
