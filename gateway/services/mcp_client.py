"""Remote MCP servers reached by the Responses API's `mcp` tool, through the `mcp` SDK's streamable
HTTP client (docs/orchestration.md, "Server-side tools").

Every HTTP request the SDK makes goes through `PinnedTransport`: the URL's host is resolved once,
every address is checked against the SSRF rules of media fetches (adapters/addresses.py: public
addresses only, unless the operator opened a network with TANTRA_TOOLS_URL_ALLOWED_NETWORKS), and the
connection is made to the address that was checked (the host kept for `Host` and TLS), so no second
DNS answer can differ. The SDK itself follows redirects only within the server's origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from adapters.addresses import AddressPolicy, Resolver, system_resolver
from adapters.fetch import parse_target

if TYPE_CHECKING:
    from mcp import Client


class ToolServerError(Exception):
    """An MCP server could not be reached, refused, or answered with an error (the message is the
    client's to read: no secrets of the gateway in it)."""


class BlockedAddress(ToolServerError):
    """The URL is not a plain http(s) URL or points at an address the gateway does not connect to."""


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Connects only to checked addresses (see the module's words)."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver = system_resolver) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = httpx2.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except (OSError, ValueError):
            raise BlockedAddress(f"The MCP server's host {host!r} could not be resolved.") from None
        if not addresses or not all(self._policy.permits(a) for a in addresses):
            raise BlockedAddress(
                f"The MCP server's host {host!r} is a loopback, private, link-local or metadata address, "
                "which the gateway does not connect to."
            )
        request.url = request.url.copy_with(host=str(addresses[0]))
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True)
class CallResult:
    output: str | None
    error: str | None


class McpServers:
    """Lists and calls the tools of MCP servers, each request under `timeout_s`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        timeout_s: float,
        max_output_chars: int,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._policy = policy
        self._timeout_s = timeout_s
        self._max_chars = max_output_chars
        self._resolver = resolver

    def check_url(self, url: str) -> None:
        """A plain http(s) URL (no userinfo, no dot segments), or BlockedAddress."""
        if parse_target(url) is None:
            raise BlockedAddress("`server_url` must be a plain http(s) URL.")

    @asynccontextmanager
    async def _session(self, url: str, headers: dict[str, str] | None) -> AsyncIterator[Client]:
        self.check_url(url)
        # Here: the SDK takes 0.7 s to import, paid at the first `mcp` tool, not at every start.
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(
            transport=PinnedTransport(self._policy, self._resolver),
            headers=headers or {},
            timeout=httpx2.Timeout(self._timeout_s),
        )
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            yield client

    async def list_tools(self, url: str, headers: dict[str, str] | None) -> list[dict[str, Any]]:
        """The server's tools as OpenAI's `mcp_list_tools` item lists them."""

        async def listing() -> list[dict[str, Any]]:
            async with self._session(url, headers) as client:
                tools = []
                cursor: str | None = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools += [
                        {
                            "name": t.name,
                            "description": t.description,
                            "input_schema": t.input_schema,
                            "annotations": t.annotations.model_dump(exclude_none=True)
                            if t.annotations
                            else None,
                        }
                        for t in page.tools
                    ]
                    cursor = page.next_cursor
                    if not cursor:
                        return tools

        return await self._bounded(listing(), "listing the tools of")

    async def call(
        self, url: str, headers: dict[str, str] | None, name: str, arguments: dict[str, Any]
    ) -> CallResult:
        """One call: its text output, or the error the server (or the way to it) gave."""

        async def calling() -> CallResult:
            async with self._session(url, headers) as client:
                result = await client.call_tool(name, arguments)
            texts = [getattr(part, "text", None) for part in result.content]
            text = "\n".join(t for t in texts if isinstance(t, str))
            if not text and result.structured_content is not None:
                text = str(result.structured_content)
            text = text[: self._max_chars]
            return CallResult(None, text or "The tool failed.") if result.is_error else CallResult(text, None)

        try:
            return await self._bounded(calling(), "calling a tool of")
        except ToolServerError as exc:
            return CallResult(None, str(exc))

    async def _bounded(self, work: Any, doing: str) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await work
        except TimeoutError:
            raise ToolServerError(
                f"{doing.capitalize()} the MCP server took over {self._timeout_s:g} s."
            ) from None
        except ToolServerError:
            raise
        except BaseExceptionGroup as group:  # the SDK's task group wraps what failed inside it
            blocked = group.subgroup(BlockedAddress)
            if blocked is not None:
                raise blocked.exceptions[0] from None
            raise ToolServerError(f"Error {doing} the MCP server: {_first(group)}.") from None
        except Exception as exc:
            raise ToolServerError(f"Error {doing} the MCP server: {type(exc).__name__}.") from None


def _first(group: BaseExceptionGroup) -> str:
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
        inner = inner.exceptions[0]
    return type(inner).__name__
