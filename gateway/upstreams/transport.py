"""The engine client's transport: httpx's interface over aiohttp's connection pool.

Why: with 64 requests in flight, two thirds of the gateway's CPU went to httpcore's pool, which
walks every pooled connection and polls each idle socket on every request (docs/performance.md).
aiohttp's pool does not; `httpx-aiohttp` puts it under the same `httpx.AsyncClient`, so the rest of
the gateway keeps speaking httpx.

httpx-aiohttp reports a refused connection and an engine that dies mid-answer as `ConnectTimeout`
(its table maps every `ClientConnectionError` so). The gateway tells those cases apart (503
"not reachable" against 504 "too slow", a torn stream against a slow one), so this module maps
aiohttp's errors onto httpx's own meaning first.

Its connect timeout also survives a stalled event loop (`EngineConnector`): on an overloaded
machine the loop can be held for longer than the connect timeout, and then every connect in
progress timed out although the kernel had completed each one (reproduced in
tests/gateway/upstreams/test_connect_timeout.py; httpx's own pool does the same).

The request path (chat and completions, JSON and streamed) does not go through httpx at all on
this transport: `EngineTransport.post` returns an `EngineAnswer`, aiohttp's response with the same
error mapping, read without httpx's `Request`/`Response`/`Headers` (docs/performance.md, round 3).
Probes, model lists and the httpx fallback pool keep httpx's interface.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport
from multidict import CIMultiDictProxy

# Loop passes a connect still gets after its timer fired: enough for the loop to see a socket the
# kernel connected during a stall and to finish the transport around it (measured: 1 on asyncio, 4 on uvloop),
# nothing that a host that does not answer would notice.
GRACE_PASSES = 16


async def within(task: asyncio.Future[Any], seconds: float) -> Any:
    """`task`'s result if it completes within `seconds` of the loop's time, or `TimeoutError`.

    Unlike `asyncio.timeout`, a timer that fires after a stall does not cancel work the loop simply
    has not had the chance to look at: the task gets `GRACE_PASSES` more passes of the loop first.
    """
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
        for _ in range(0 if done else GRACE_PASSES):
            await asyncio.sleep(0)
            if task.done():
                break
    except BaseException:
        task.cancel()
        raise
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
        if task.cancelled():
            raise TimeoutError
    return task.result()  # (a task that finished as it was cancelled is used, not leaked)


class EngineConnector(aiohttp.TCPConnector):
    """aiohttp's connector with the socket connect timed by `within` instead of a plain timer.

    It overrides `_wrap_create_connection`, aiohttp's one place that opens a socket under
    `sock_connect` (stable since 3.8; the stall test fails if a new aiohttp moves it). The pool wait
    is still bounded by aiohttp's own `connect` timeout (httpx's pool timeout).
    """

    # aiohttp's own signature: `timeout` is its ClientTimeout, passed on.
    async def _wrap_create_connection(
        self,
        *args: Any,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
        **kwargs: Any,
    ) -> Any:
        seconds = timeout.sock_connect
        untimed = aiohttp.ClientTimeout(
            total=timeout.total,
            connect=timeout.connect,
            sock_read=timeout.sock_read,
            ceil_threshold=timeout.ceil_threshold,
        )
        opening = asyncio.ensure_future(super()._wrap_create_connection(*args, timeout=untimed, **kwargs))
        if seconds is None or seconds <= 0:
            return await opening
        try:
            return await within(opening, seconds)
        except TimeoutError as exc:
            request = kwargs.get("req")
            where = request.url if request is not None else "the engine"
            raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {where}") from exc


def _raise_as_httpx(exc: httpx.TransportError | aiohttp.ClientError) -> NoReturn:
    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    message = str(exc) or type(cause).__name__
    mapped: type[httpx.TransportError]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        mapped = httpx.ConnectTimeout
    elif isinstance(cause, aiohttp.ServerTimeoutError | aiohttp.SocketTimeoutError):
        mapped = httpx.ReadTimeout
    elif isinstance(cause, aiohttp.ClientConnectorError):
        mapped = httpx.ConnectError
    elif isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        mapped = httpx.RemoteProtocolError
    elif isinstance(cause, aiohttp.ClientConnectionError):
        mapped = httpx.ReadError
    elif isinstance(cause, aiohttp.ClientResponseError):  # bytes that are not HTTP
        mapped = httpx.RemoteProtocolError
    else:
        raise exc
    raise mapped(message) from cause


class _Body(httpx.AsyncByteStream):
    """The response body, with aiohttp's errors mapped as above."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _raise_as_httpx(exc)

    async def aclose(self) -> None:
        # An unfinished body closes its connection instead of returning it to the pool, which is
        # what makes vLLM abort a request whose client left. A connection that already broke has
        # been reported by the read that saw it; closing it raises nothing new.
        with contextlib.suppress(httpx.TransportError, aiohttp.ClientError):
            await self._inner.aclose()


class EngineTransport(AiohttpTransport):
    """httpx-aiohttp's transport with aiohttp's errors given httpx's meaning (see above). It ignores
    proxy settings from the environment, like the engine client itself (`trust_env=False`)."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)

    def get_client(self) -> aiohttp.ClientSession:
        """httpx-aiohttp's own session, on `EngineConnector`. No per-host limit (aiohttp's default
        `limit_per_host=0`): `max_connections` bounds the whole pool as in httpx's. An engine named
        by IP address is connected without a lookup; a host name is resolved once per 10 s
        (aiohttp's DNS cache), concurrent lookups of one name shared. No cookie jar: aiohttp's
        keeps the cookies of engines named by host, and would send one caller's on every later
        caller's request (and reads and filters them on every request)."""
        connector = EngineConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def post(
        self, url: yarl.URL, body: bytes, headers: Mapping[str, str], limits: aiohttp.ClientTimeout
    ) -> EngineAnswer:
        """The request path's POST on aiohttp's session directly: no httpx `Request`, `Response`
        or `Headers` around aiohttp's own (docs/performance.md, fix 4). The session, the options
        and the error mapping are `handle_async_request`'s, so both routes behave alike.
        `limits` are aiohttp's timeouts (`client_timeout`), which aiohttp enforces itself."""
        session = self.client
        if not isinstance(session, aiohttp.ClientSession):
            session = self.client = self.get_client()
        try:
            response = await session.request(
                "POST",
                url,
                data=body or None,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=limits,
            )
        except aiohttp.ClientError as exc:
            _raise_as_httpx(exc)
        return EngineAnswer(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _raise_as_httpx(exc)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response


def client_timeout(timeouts: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's timeouts (`Timeout.as_dict()`) as httpx-aiohttp hands them to aiohttp."""
    return aiohttp.ClientTimeout(
        sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"), connect=timeouts.get("pool")
    )


class EngineAnswer:
    """An engine's answer, read from aiohttp's response as `_Body` reads it (the same chunks, the
    same error mapping, the same close), with the status and headers aiohttp already parsed."""

    __slots__ = ("_response", "headers", "status_code")

    CHUNK_SIZE = 16 * 1024  # httpx-aiohttp's read size

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code: int = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(self.CHUNK_SIZE):
                yield chunk
        except aiohttp.ClientError as exc:
            _raise_as_httpx(exc)
        await self.aclose()

    async def aread(self) -> bytes:
        try:
            body = await self._response.read()
        except aiohttp.ClientError as exc:
            _raise_as_httpx(exc)
        await self.aclose()
        return body

    async def aclose(self) -> None:
        # As `_Body.aclose`: an unfinished body closes its connection (vLLM aborts the request).
        with contextlib.suppress(aiohttp.ClientError):
            await self._response.__aexit__(None, None, None)
