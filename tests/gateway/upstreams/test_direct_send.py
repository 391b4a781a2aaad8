"""The request path's sends go straight to the engine client's transport (docs/performance.md, fix
4): the same request on the wire as through httpx's client, the same error mapping, and no cookie
carried from one caller's answer to the next caller's request (real sockets, the real transport)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.errors import EngineTimeout, EngineUnavailable, InvalidRequest
from gateway.upstreams.http_api import HttpApi
from gateway.upstreams.transport import EngineTransport
from tests.servers import free_port

OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nset-cookie: session=caller-a\r\n"
    b"content-length: 2\r\n\r\n{}"
)
BAD = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 36\r\n\r\n"
    b'{"error": {"message": "no, thanks"}}'
)


def _client(read_s: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read_s, connect=2.0),
        transport=EngineTransport(limits=httpx.Limits(max_connections=8, keepalive_expiry=30.0)),
        trust_env=False,
    )


async def _recording_engine(answer: bytes) -> tuple[asyncio.Server, str, list[dict[str, str]], list[bytes]]:
    """An engine that records each request's headers and body and answers `answer`."""
    heads: list[dict[str, str]] = []
    bodies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.decode().split("\r\n")[1:]
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            heads.append(headers)
            bodies.append(await reader.readexactly(int(headers.get("content-length", "0"))))
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", heads, bodies


async def test_the_request_carries_the_body_headers_and_key_and_no_cookie() -> None:
    server, url, heads, bodies = await _recording_engine(OK)
    async with server, _client() as client:
        api = HttpApi(url + "/", client, auth={"Authorization": "Bearer provider-key"})
        for caller in ("a", "b"):
            response = await api.open("/v1/chat/completions", b'{"x": 1}', {"X-Request-Id": caller})
            assert response.status_code == 200
            assert await response.aread() == b"{}"
            await response.aclose()
    assert bodies == [b'{"x": 1}', b'{"x": 1}']
    for caller, head in zip(("a", "b"), heads, strict=True):
        assert head["x-request-id"] == caller
        assert head["authorization"] == "Bearer provider-key"
        assert head["content-type"] == "application/json"
        assert head["accept-encoding"] == "identity"
        assert head["content-length"] == "8"
    # The first caller's answer set a cookie; the second caller's request does not carry it.
    assert "cookie" not in heads[1]


async def test_an_error_answer_is_raised_as_the_clients_error() -> None:
    server, url, _, _ = await _recording_engine(BAD)
    async with server, _client() as client:
        with pytest.raises(InvalidRequest, match="no, thanks"):
            await HttpApi(url, client).open("/v1/chat/completions", b"{}", {})


async def test_transport_failures_keep_their_meaning() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)
        writer.close()

    async with _client(read_s=0.3) as client:
        with pytest.raises(EngineUnavailable):
            await HttpApi(f"http://127.0.0.1:{free_port()}", client).open("/v1/completions", b"{}", {})
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(EngineTimeout):
                await HttpApi(f"http://127.0.0.1:{port}", client).open("/v1/completions", b"{}", {})


async def test_a_client_with_mounts_is_sent_through_as_before() -> None:
    """Proxies or per-host transports are the client's to choose between: those requests keep
    httpx's whole path."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    mounted = httpx.MockTransport(answer)
    async with httpx.AsyncClient(mounts={"http://engine": mounted}, trust_env=False) as client:
        response = await HttpApi("http://engine", client).open(
            "/v1/completions", b"{}", {"x-request-id": "r"}
        )
        assert response.status_code == 200
    assert [r.headers["x-request-id"] for r in seen] == ["r"]


async def test_a_client_with_event_hooks_is_sent_through_its_hooks() -> None:
    """Hooks (an operator's instrumentation, a test's recorder) see every request, also ones added
    after the upstream was built."""
    server, url, heads, _ = await _recording_engine(OK)
    seen: list[str] = []

    async def remember(request: httpx.Request) -> None:
        seen.append(request.headers["x-request-id"])

    async with server, _client() as client:
        api = HttpApi(url, client)
        client.event_hooks["request"] = [remember]
        response = await api.open("/v1/completions", b"{}", {"x-request-id": "r"})
        assert response.status_code == 200
        await response.aclose()
    assert seen == ["r"]
    assert heads[0]["x-request-id"] == "r"
