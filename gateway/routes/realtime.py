"""WebSocket /v1/realtime: OpenAI's Realtime API (a practical subset) over the gateway's own endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway.auth import Principal
from gateway.auth.authenticator import presented_key
from gateway.errors import APIError, PermissionDenied
from gateway.http.address import client_address
from gateway.realtime.loopback import Loopback
from gateway.realtime.session import RealtimeLimits, RealtimeSession
from gateway.upstreams import ModelCatalog

# Browsers cannot set headers on a WebSocket: OpenAI's clients pass the key as a subprotocol.
_KEY_PROTOCOL = "openai-insecure-api-key."
_OUTBOX = 256  # server events queued for a slow client before the session waits for it


def realtime_router(
    catalog: ModelCatalog,
    authenticate: Callable[[Mapping[str, str], str | None], Awaitable[Principal]],
    limits: Callable[[], RealtimeLimits],
) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        offered = [
            p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()
        ]
        try:
            # A malformed Authorization header is a 401 like any other key problem.
            key = presented_key(websocket.headers) or _subprotocol_key(offered)
            # A key sent as a subprotocol is checked exactly as the same key in a header.
            headers = {"authorization": f"Bearer {key}"} if key else {}
            principal = await authenticate(headers, client_address(websocket))
            model = websocket.query_params.get("model")
            card = await catalog.resolve(model)
            name = str(card["id"])
            if not principal.may_use(name):
                raise PermissionDenied(
                    f"This API key may not use the model `{name}`.", param="model", code="model_not_allowed"
                )
        except APIError as exc:
            await websocket.send_denial_response(exc.response())
            return
        chosen = "realtime" if "realtime" in offered else None
        await websocket.accept(subprotocol=chosen)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        headers["user-agent"] = "tantra-realtime"
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_OUTBOX)
        session = RealtimeSession(
            model=name,
            loopback=Loopback(websocket.scope["app"], websocket.scope, headers),
            send=outbox.put,
            limits=limits(),
        )
        await _serve(websocket, session, outbox)

    return router


async def _serve(
    websocket: WebSocket, session: RealtimeSession, outbox: asyncio.Queue[dict[str, Any]]
) -> None:
    """Read client events until the client leaves; one writer task sends the server's, in order."""

    async def write() -> None:
        alive = True
        while True:
            event = await outbox.get()
            if not alive:
                continue  # the client is gone: keep emptying, so that no emitter waits for room
            try:
                await websocket.send_text(orjson.dumps(event).decode())
            except Exception:
                alive = False

    writer = asyncio.create_task(write())
    try:
        await session.start()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            await session.feed(message.get("text") or message.get("bytes") or b"")
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def _subprotocol_key(offered: list[str]) -> str | None:
    for protocol in offered:
        if protocol.startswith(_KEY_PROTOCOL):
            return protocol[len(_KEY_PROTOCOL) :] or None
    return None
