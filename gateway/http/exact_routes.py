"""A few hot routes answered past Starlette's router and FastAPI's request handling.

The router tries its ~200 routes in order, and FastAPI wraps every endpoint in exception layers,
an exit stack and dependency solving, even one that takes only the `Request`; at one request in
flight that is a visible share of the gateway's own time (docs/performance.md). The routes stay
registered with the router (the OpenAPI document, other methods' 405s, a `root_path`), so this layer
only takes what it is sure of: the exact path, the method, no root path. It sits inside the
middleware that every request needs (request id, listener gate, drain, instrumentation) and answers
errors with the app's own exception handlers, as Starlette's ExceptionMiddleware would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class ExactRoutes:
    """`routes` maps an exact path to the endpoint that answers POST on it; everything else goes to
    `app`. `exception_handlers` is the app's mapping (read per error, so handlers added later
    count); an error raised before the answer started is answered by the handler of the nearest
    class in its MRO, else raised to the layers outside."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, Endpoint],
        exception_handlers: Mapping[object, Callable[..., object]],
    ) -> None:
        self.app = app
        self._routes = dict(routes)
        self._handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self._routes.get(scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        # As the router's: an error while the answer is being sent is raised to the layers outside
        # (EdgeMiddleware logs it; the status line is already out).
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        for kind in type(exc).__mro__:
            if kind is Exception:
                # Starlette gives Exception's handler to ServerErrorMiddleware, outside: so does this.
                return None
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler  # type: ignore[return-value]
        return None
