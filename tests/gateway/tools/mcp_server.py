"""A real MCP server for the tests: the `mcp` SDK's MCPServer (FastMCP's successor in mcp 2.x) over
streamable HTTP, served by uvicorn from a thread on 127.0.0.1. The arguments are enums: the test
model has random weights, and vLLM pins its calls to the tools' schemas, so a call is a few tokens."""

from __future__ import annotations

from typing import Literal

from mcp.server.mcpserver import MCPServer

from tests.servers import ThreadedServer

CALLS: list[dict[str, object]] = []


def build() -> MCPServer:
    server = MCPServer("tantra-test-tools")

    @server.tool()
    def lookup_order(order_id: Literal["A1", "B2"]) -> str:
        """The status of an order, by its id."""
        CALLS.append({"tool": "lookup_order", "order_id": order_id})
        return f"Order {order_id}: shipped on 2026-12-01 (PAPAYA-42)."

    @server.tool()
    def add(a: Literal[1, 2, 3], b: Literal[1, 2, 3]) -> int:
        """The sum of two integers."""
        CALLS.append({"tool": "add", "a": a, "b": b})
        return a + b

    @server.tool()
    def explode(reason: Literal["now"]) -> str:
        """Always fails."""
        raise ValueError(f"exploded: {reason}")

    return server


def serve() -> ThreadedServer:
    """The server's app on a free port; its endpoint is `<url>/mcp`."""
    return ThreadedServer(build().streamable_http_app(json_response=False))
