"""The request path's own route on the engine transport (`EngineTransport.post`, `EngineAnswer`):
aiohttp's response read without httpx's objects, with every failure meaning what it means on
httpx's route (test_transport.py) and the connection handled the same way (real sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest
import yarl

from gateway.upstreams.http_api import HttpApi
from gateway.upstreams.transport import EngineAnswer, EngineTransport, client_timeout
from tests.gateway.upstreams.test_transport import (
    EVENT,
    HEAD,
    Handler,
    _read_request,
    dies,
    endless,
    garbles,
    serve,
    stalls,
)
from tests.servers import free_port

BODY = b'{"model": "m"}'
COOKIE_ANSWER = b"HTTP/1.1 200 OK\r\nset-cookie: session=caller-a; Path=/\r\ncontent-length: 2\r\n\r\n{}"


async def transport() -> AsyncIterator[EngineTransport]:
    engine = EngineTransport(limits=httpx.Limits(max_connections=8, keepalive_expiry=30.0))
    try:
        yield engine
    finally:
        await engine.aclose()


def _limits(read_s: float = 5.0) -> aiohttp.ClientTimeout:
    return client_timeout(httpx.Timeout(read_s, connect=2.0).as_dict())


async def _post(engine: EngineTransport, url: str, read_s: float = 5.0) -> EngineAnswer:
    return await engine.post(yarl.URL(url + "/v1/chat/completions"), BODY, {"x-a": "1"}, _limits(read_s))


async def _stream(handler: Handler, read_s: float = 5.0) -> list[bytes]:
    """What the route yields from `handler`'s answer before it ends or raises."""
    server, url = await serve(handler)
    chunks: list[bytes] = []
    async with server:
        async for engine in transport():
            answer = await _post(engine, url, read_s)
            try:
                async for chunk in answer.aiter_raw():
                    chunks.append(chunk)
            finally:
                await answer.aclose()
    return chunks


async def test_the_gateways_send_takes_this_route_on_the_engine_transport() -> None:
    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(HEAD.replace(b"200 OK", b"200 OK\r\nretry-after: 3") + EVENT + b"0\r\n\r\n")
        await writer.drain()

    server, url = await serve(answers)
    async with server, httpx.AsyncClient(transport=EngineTransport(limits=httpx.Limits())) as client:
        answer = await HttpApi(url, client).open("/v1/chat/completions", BODY, {})
        assert isinstance(answer, EngineAnswer)
        assert answer.status_code == 200
        assert answer.headers.get("Retry-After") == "3"  # case-insensitive, as httpx's
        assert [chunk async for chunk in answer.aiter_raw()] == [b"data: {}\n\n"]


async def test_refused_connection_is_a_connect_error() -> None:
    async for engine in transport():
        with pytest.raises(httpx.ConnectError):
            await _post(engine, f"http://127.0.0.1:{free_port()}")


async def test_engine_dying_mid_stream_is_a_protocol_error_not_a_timeout() -> None:
    with pytest.raises(httpx.TransportError) as caught:
        await _stream(dies)
    assert not isinstance(caught.value, httpx.TimeoutException)


async def test_a_silent_engine_is_a_read_timeout() -> None:
    with pytest.raises(httpx.ReadTimeout):
        await _stream(stalls, read_s=0.3)


async def test_bytes_that_are_not_http_are_a_protocol_error() -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await _stream(garbles)


async def test_leaving_early_closes_the_connection() -> None:
    """What makes vLLM abort: the engine sees its connection close when the relay stops reading."""
    closed = asyncio.Event()

    server, url = await serve(endless(closed))
    async with server:
        async for engine in transport():
            answer = await _post(engine, url)
            async for _ in answer.aiter_raw():
                break
            await answer.aclose()
            await answer.aclose()  # twice is harmless
            await asyncio.wait_for(closed.wait(), timeout=5)


async def test_a_whole_answer_gives_its_connection_back_to_the_pool() -> None:
    connections = 0

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await _read_request(reader)
                await reader.readexactly(len(BODY))
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server, url = await serve(answers)
    async with server:
        async for engine in transport():
            for _ in range(3):
                answer = await _post(engine, url)
                assert await answer.aread() == b"{}"
                await answer.aclose()
    assert connections == 1


async def test_no_cookie_is_carried_to_an_engine_named_by_host() -> None:
    """aiohttp's session keeps cookies for host names (not for IP addresses): the engine client's
    must not, or one caller's cookie goes out on every later caller's request."""
    heads: list[bytes] = []

    async def sets_cookie(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(len(BODY))
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(COOKIE_ANSWER)
            await writer.drain()
        writer.close()

    server, url = await serve(sets_cookie)
    async with server:
        async for engine in transport():
            for _ in range(2):
                answer = await _post(engine, url.replace("127.0.0.1", "localhost"))
                assert await answer.aread() == b"{}"
    assert len(heads) == 2
    assert b"cookie" not in heads[1].lower()
