"""WebSocket /v1/realtime: OpenAI's Realtime API (a practical subset) over the gateway's own endpoints
(its WebRTC transport: realtime_calls.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from gateway.auth import Principal
from gateway.auth.authenticator import presented_key
from gateway.errors import APIError, RateLimited, no_such_model
from gateway.http.client_address import client_address
from gateway.limits import RateLimiter
from gateway.realtime.loopback import Loopback
from gateway.realtime.session import RealtimeLimits, RealtimeSession
from gateway.realtime.slots import SessionCaps, SessionSlots, leased
from gateway.upstreams import ModelCatalog

# Browsers cannot set headers on a WebSocket: OpenAI's clients pass the key as a subprotocol.
_KEY_PROTOCOL = "openai-insecure-api-key."
_OUTBOX = 256  # server events queued for a slow client before the session waits for it


def realtime_router(
    catalog: ModelCatalog,
    authenticate: Callable[[Mapping[str, str], str | None], Awaitable[Principal]],
    limits: Callable[[], RealtimeLimits],
    limiter: RateLimiter,
    rejected: Callable[[str, str], None] = lambda limit, scope: None,
    slots: SessionSlots | None = None,
) -> APIRouter:
    """`rejected(limit, scope)` counts a handshake refused by a session cap or a concurrency limit
    (the rate-limit metric); `slots`: this replica's open sessions, shared with the WebRTC calls."""
    router = APIRouter()
    slots = slots or SessionSlots()

    @router.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        offered = [
            p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()
        ]
        current = limits()
        async with contextlib.AsyncExitStack() as held:
            try:
                # A malformed Authorization header is a 401 like any other key problem.
                key = presented_key(websocket.headers) or _subprotocol_key(offered)
                # A key sent as a subprotocol is checked exactly as the same key in a header.
                headers = {"authorization": f"Bearer {key}"} if key else {}
                principal = await authenticate(headers, client_address(websocket))
                # Before the handshake: a refused client gets a plain 429, nothing is allocated.
                await admit(held, slots, limiter, principal, current)
                name = await model_for(catalog, principal, websocket.query_params.get("model"))
            except APIError as exc:
                if isinstance(exc, RateLimited) and exc.limit is not None and exc.scope is not None:
                    rejected(exc.limit, exc.scope)
                await websocket.send_denial_response(exc.response())
                return
            chosen = "realtime" if "realtime" in offered else None
            await websocket.accept(subprotocol=chosen)
            headers["user-agent"] = "tantra-realtime"
            outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_OUTBOX)
            session = RealtimeSession(
                model=name,
                loopback=Loopback(websocket.scope["app"], websocket.scope, headers),
                send=outbox.put,
                limits=current,
            )
            await _serve(websocket, session, outbox, current.idle_timeout_s)

    return router


async def admit(
    held: contextlib.AsyncExitStack,
    slots: SessionSlots,
    limiter: RateLimiter,
    principal: Principal,
    current: RealtimeLimits,
) -> None:
    """A session's slots, held by `held` until it closes, or RateLimited: this replica's count
    first, then every replica's, in Redis (the key's sessions, its concurrency slot)."""
    held.enter_context(slots.hold(principal, SessionCaps(current.max_sessions, current.max_sessions_per_key)))
    await held.enter_async_context(leased(limiter, principal, current.max_sessions_per_key))


async def model_for(catalog: ModelCatalog, principal: Principal, model: str | None) -> str:
    card = await catalog.resolve(model)
    name = str(card["id"])
    if not principal.may_use(name):
        raise no_such_model(name)
    return name


async def _serve(
    websocket: WebSocket, session: RealtimeSession, outbox: asyncio.Queue[dict[str, Any]], idle_s: float
) -> None:
    """Read client events until the client leaves (or stays silent for `idle_s` while no response
    runs: its slot is then given back); one writer task sends the server's events, in order."""

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
            try:
                message = await asyncio.wait_for(websocket.receive(), idle_s)
            except TimeoutError:
                if session.busy:
                    continue
                await websocket.close(code=1000, reason=f"Session idle for {idle_s:g} s; closed.")
                break
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
