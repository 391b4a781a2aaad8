"""Pure ASGI middleware: no per-request objects beyond what each job needs, and streams pass untouched."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import APIError, error_for
from gateway.http.client_address import TrustedProxies, resolve_client

_log = logging.getLogger("tantra.gateway")

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class EdgeMiddleware:
    """The outermost layer: a request id on every response, and no stack trace ever sent.

    The id comes from `x-request-id` when the client sent a usable one; it is stored
    in the scope (`scope["state"]["request_id"]`) and echoed on the response; the
    engine gets a unique variant of it, so logs on both sides can be joined. Clients
    may reuse ids, so the ledger keys its row by the gateway's own
    (`unique_request_id`, the request id itself when the client sent none). An
    exception nothing else handled becomes a 500 in OpenAI's envelope (Starlette's
    own handler would answer in plain text). With trusted proxies configured, the
    client's forwarded address is resolved here, once (`client_address`).
    """

    def __init__(self, app: ASGIApp, proxies: TrustedProxies | None = None) -> None:
        self.app = app
        self._proxies = proxies if proxies is not None and proxies.configured else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._proxies is not None and scope["type"] in ("http", "websocket"):
            resolve_client(scope, self._proxies)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _incoming_id(scope)
        own = uuid.uuid4().hex
        request_id = given or own.encode()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode()
        # The gateway's own id, unique per request whatever the client sends: the ledger's key.
        state["unique_request_id"] = own
        state["client_request_id"] = given.decode() if given else None
        # The engine needs an id unique among its live requests, which a client's id need not be.
        state["engine_request_id"] = f"{request_id.decode()}-{own[:8]}" if given else own
        header = (b"x-request-id", request_id)

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            _log.exception("unhandled error", extra={"request_id": request_id.decode()})
            if started:
                raise
            failure = APIError("The server had an error while processing your request.")
            response = error_for(scope["path"], failure)
            await response(scope, receive, send_with_id)


def _incoming_id(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value if _SAFE_ID.match(value) else None
    return None
