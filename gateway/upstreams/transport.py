"""The engine client's transport: httpx's interface over aiohttp's connection pool.

Why: with 64 requests in flight, two thirds of the gateway's CPU went to httpcore's pool, which
walks every pooled connection and polls each idle socket on every request (docs/performance.md).
aiohttp's pool does not; `httpx-aiohttp` puts it under the same `httpx.AsyncClient`, so the rest of
the gateway keeps speaking httpx.

httpx-aiohttp reports a refused connection and an engine that dies mid-answer as `ConnectTimeout`
(its table maps every `ClientConnectionError` so). The gateway tells those cases apart (503
"not reachable" against 504 "too slow", a torn stream against a slow one), so this module maps
aiohttp's errors onto httpx's own meaning first.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _raise_as_httpx(exc)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response
