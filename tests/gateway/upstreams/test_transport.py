"""The engine client's aiohttp transport keeps httpx's meaning of each failure (real sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from gateway.upstreams.transport import EngineTransport
from tests.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = b"a\r\ndata: {}\n\n\r\n"  # one chunk of 0xa bytes


async def dies(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An engine that sends one event and closes: a stream torn mid-way."""
    await _read_request(reader)
    writer.write(HEAD + EVENT)
    await writer.drain()
    writer.close()


async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An engine that sends its head and then nothing for 2 s."""
    await _read_request(reader)
    writer.write(HEAD)
    await writer.drain()
    await asyncio.sleep(2)
    writer.close()


async def garbles(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An engine whose body is not HTTP chunking."""
    await _read_request(reader)
    writer.write(HEAD + b"zz\r\nnot a chunk\r\n")
    await writer.drain()
    await asyncio.sleep(1)
    writer.close()


def endless(closed: asyncio.Event) -> Handler:
    """An engine that streams events until its client closes the connection, then sets `closed`."""

    async def streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(HEAD)
        try:
            while True:
                writer.write(EVENT)
                await writer.drain()
                await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            closed.set()

    return streams


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def client(read_s: float = 5.0) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(read_s, connect=2.0),
        transport=EngineTransport(limits=httpx.Limits(max_connections=8, keepalive_expiry=30.0)),
    ) as c:
        yield c


async def test_refused_connection_is_a_connect_error() -> None:
    async for c in client():
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{free_port()}/health")


async def test_engine_dying_mid_stream_is_a_protocol_error_not_a_timeout() -> None:
    server, url = await serve(dies)
    async with server:
        async for c in client():
            async with c.stream("POST", url + "/v1/chat/completions", content=b"{}") as response:
                chunks: list[bytes] = []
                with pytest.raises(httpx.TransportError) as caught:
                    async for chunk in response.aiter_raw():
                        chunks.append(chunk)
                assert not isinstance(caught.value, httpx.TimeoutException)
                assert b"".join(chunks) == b"data: {}\n\n"


async def test_a_silent_engine_is_a_read_timeout() -> None:
    server, url = await serve(stalls)
    async with server:
        async for c in client(read_s=0.3):
            async with c.stream("POST", url + "/v1/chat/completions", content=b"{}") as response:
                with pytest.raises(httpx.ReadTimeout):
                    async for _ in response.aiter_raw():
                        pass


async def test_leaving_early_closes_the_connection() -> None:
    """What makes vLLM abort: the engine sees its connection close when the relay stops reading."""
    closed = asyncio.Event()

    server, url = await serve(endless(closed))
    async with server:
        async for c in client():
            async with c.stream("POST", url + "/v1/chat/completions", content=b"{}") as response:
                async for _ in response.aiter_raw():
                    break
            await asyncio.wait_for(closed.wait(), timeout=5)


async def test_bytes_that_are_not_http_are_a_protocol_error() -> None:
    server, url = await serve(garbles)
    async with server:
        async for c in client():
            # aiohttp may see the garbage with the headers or with the first read: either way it is
            # httpx's protocol error, which the gateway reports as a broken engine.
            with pytest.raises(httpx.RemoteProtocolError):
                async with c.stream("POST", url + "/v1/chat/completions", content=b"{}") as response:
                    async for _ in response.aiter_raw():
                        pass
