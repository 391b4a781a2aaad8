"""WebSocket /v1/realtime: OpenAI's Realtime API (a practical subset) over the gateway's own endpoints
(its WebRTC transport: realtime_calls.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.types import Scope

from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.auth import Principal
from gateway.auth.authenticator import presented_key
from gateway.auth.ephemeral import RealtimeCaller
from gateway.errors import APIError, RateLimited, no_such_model
from gateway.http.client_address import client_address
from gateway.limits import RateLimiter
from gateway.realtime.events import new_id
from gateway.realtime.loopback import Loopback
from gateway.realtime.session import RealtimeLimits, RealtimeSession
from gateway.realtime.slots import SessionCaps, SessionSlots, leased
from gateway.upstreams import ModelCatalog

# Browsers cannot set headers on a WebSocket: OpenAI's clients pass the key as a subprotocol.
_KEY_PROTOCOL = "openai-insecure-api-key."
_AGENT = "tantra-realtime"
_OUTBOX = 256  # server events queued for a slow client before the session waits for it


def realtime_router(
    catalog: ModelCatalog,
    identify: Callable[[Mapping[str, str], str | None], Awaitable[RealtimeCaller]],
    limits: Callable[[], RealtimeLimits],
    limiter: RateLimiter,
    rejected: Callable[[str, str], None] = lambda limit, scope: None,
    slots: SessionSlots | None = None,
) -> APIRouter:
    """`identify`: the caller, by API key or ephemeral client secret (gateway/auth/ephemeral.py);
    `rejected(limit, scope)` counts a handshake refused by a session cap or a concurrency limit
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
                caller = await identify(headers, client_address(websocket))
                # Before the handshake: a refused client gets a plain 429, nothing is allocated.
                await admit(held, slots, limiter, caller.principal, current)
                name = await model_for(catalog, caller.principal, model_asked(caller, websocket.query_params))
            except APIError as exc:
                if isinstance(exc, RateLimited) and exc.limit is not None and exc.scope is not None:
                    rejected(exc.limit, exc.scope)
                await websocket.send_denial_response(exc.response())
                return
            chosen = "realtime" if "realtime" in offered else None
            await websocket.accept(subprotocol=chosen)
            outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_OUTBOX)
            session = RealtimeSession(
                model=name,
                loopback=loopback_for(websocket.scope, headers, caller),
                send=outbox.put,
                limits=current,
            )
            await _serve(websocket, session, outbox, current.idle_timeout_s, opening_update(caller))

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


def model_asked(caller: RealtimeCaller, query: Mapping[str, Any]) -> str | None:
    """`?model=`, else that of the ephemeral secret's session."""
    model = query.get("model") or (caller.grant.session.get("model") if caller.grant else None)
    return model if isinstance(model, str) else None


def loopback_for(scope: Scope, headers: Mapping[str, str], caller: RealtimeCaller) -> Loopback:
    """The session's own requests: with the caller's key, or, for an ephemeral secret (which no
    other route takes), acting as the key that minted it, each request with its own ledger id."""
    if caller.grant is None:
        return Loopback(scope["app"], scope, {**headers, "user-agent": _AGENT})
    key_id = caller.grant.key_id
    return Loopback(
        scope["app"], scope, {"user-agent": _AGENT}, lambda: {ACTING_AS: InternalCall(key_id, new_id("req"))}
    )


def opening_update(caller: RealtimeCaller) -> bytes | None:
    """An ephemeral secret's session configuration, as the session's first `session.update`."""
    if caller.grant is None:
        return None
    return orjson.dumps({"type": "session.update", "session": caller.grant.session})


async def model_for(catalog: ModelCatalog, principal: Principal, model: str | None) -> str:
    card = await catalog.resolve(model)
    name = str(card["id"])
    if not principal.may_use(name):
        raise no_such_model(name)
    return name


async def _serve(
    websocket: WebSocket,
    session: RealtimeSession,
    outbox: asyncio.Queue[dict[str, Any]],
    idle_s: float,
    opening: bytes | None,
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
        if opening is not None:
            await session.feed(opening)
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
