"""Two listeners, one app: the API port (public, behind the proxy) and the operator port (reached by
Prometheus and the operator only). The gate decides by the port a connection arrived on
(`scope["server"]`, the socket's own address, which no client header can change) which routes
answer there; every other path answers 404 as if it did not exist, so the API port reveals nothing
of the operator surface (internal URLs, failure reasons, every engine's metrics).
"""

from __future__ import annotations

from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import NotFound, error_for

Listener = Literal["api", "operator", "single"]
AdminListener = Literal["api", "operator", "both"]

# Only on the operator listener: what describes the deployment or costs a fan-out to every engine.
OPERATOR_ONLY = ("/metrics", "/health/upstreams", "/debug/")
# On both: what load balancers and orchestrators probe (/readyz is a bare status on the API port).
PROBES = frozenset({"/livez", "/healthz", "/readyz"})


def listener_of(scope: Scope, operator_port: int) -> Listener:
    """Which listener `scope` arrived on; `single` when there is no operator port (0)."""
    if not operator_port:
        return "single"
    server = scope.get("server")
    return "operator" if server is not None and server[1] == operator_port else "api"


def served_on(path: str, listener: Listener, admin: AdminListener) -> bool:
    if listener == "single" or path in PROBES:
        return True
    if path == "/admin" or path.startswith("/admin/"):
        return admin in ("both", listener)
    operator_route = path.startswith(OPERATOR_ONLY)
    return operator_route if listener == "operator" else not operator_route


class ListenerGate:
    """Pure ASGI: a request for a route not served on its listener gets the 404 of an unknown URL."""

    def __init__(self, app: ASGIApp, *, operator_port: int, admin: AdminListener) -> None:
        self.app = app
        self._port = operator_port
        self._admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or served_on(
            scope["path"], listener_of(scope, self._port), self._admin
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Closing before accepting is a 403 at the handshake.
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        method = scope.get("method", "GET")
        response = error_for(scope["path"], NotFound(f"Invalid URL ({method} {scope['path']})"))
        await response(scope, receive, send)
