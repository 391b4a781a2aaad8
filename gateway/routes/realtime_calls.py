"""The Realtime API over WebRTC: the client POSTs its SDP offer and gets the gateway's answer.

GA: POST /v1/realtime/calls (the offer as `application/sdp`, or `multipart/form-data` with `sdp`
and a `session` configuration), answered 201 with the SDP and `Location: /v1/realtime/calls/{id}`;
POST /v1/realtime/calls/{id}/hangup ends it. Beta: POST /v1/realtime?model=... with the offer. The
key is an API key, or an ephemeral client secret (routes/realtime_secrets.py). Admission is the
WebSocket path's (routes/realtime.py: the same session slots and leases, and `model`), plus this
replica's cap on calls; the call itself (gateway/realtime/webrtc.py) runs the same session as a
WebSocket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from gateway.auth import Principal
from gateway.auth.authenticator import presented_key
from gateway.auth.ephemeral import RealtimeCaller
from gateway.errors import APIError, InvalidRequest, NotFound, PayloadTooLarge, RateLimited
from gateway.http.client_address import client_address
from gateway.limits import RateLimiter
from gateway.realtime.events import Emit
from gateway.realtime.session import RealtimeLimits, RealtimeSession
from gateway.realtime.slots import SessionSlots, TooManySessions
from gateway.realtime.transport import AudioOut, WebRtcOptions
from gateway.realtime.webrtc import WebRtcCalls
from gateway.routes.realtime import admit, loopback_for, model_asked, model_for, opening_update
from gateway.upstreams import ModelCatalog

_MAX_OFFER = 64 * 1024  # an offer is a few KiB; anything much larger is not one
_SDP = "application/sdp"


@dataclass(frozen=True)
class CallDesk:
    """What answering a call needs: the WebSocket path's admission, and this replica's calls."""

    catalog: ModelCatalog
    identify: Callable[[Mapping[str, str], str | None], Awaitable[RealtimeCaller]]
    limits: Callable[[], RealtimeLimits]
    limiter: RateLimiter
    slots: SessionSlots
    calls: WebRtcCalls
    options: WebRtcOptions
    # Counts an offer refused by a session cap or a concurrency limit (the rate-limit metric).
    rejected: Callable[[str, str], None] = lambda limit, scope: None


# The answers the routes give besides the SDP answer, documented for the OpenAPI description
# (the body is read raw, so FastAPI does not infer the 400 itself).
_OFFER_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "No SDP offer, or not as application/sdp or multipart with `sdp`."},
    404: {"description": "The model is not served."},
    413: {"description": "The offer or a form part is over its size limit."},
    429: {"description": "The key's sessions or concurrency, or the replica's calls, are at their cap."},
}
_HANGUP_ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "No such call open for this key."}}


def realtime_calls_router(desk: CallDesk) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/realtime/calls", status_code=201, responses=_OFFER_ERRORS)
    async def create_call(request: Request) -> Response:
        return await _answer(desk, request)

    @router.post("/v1/realtime", status_code=201, responses=_OFFER_ERRORS)
    async def create_beta_call(request: Request) -> Response:
        """Beta's WebRTC: the same offer, POSTed to the WebSocket's path with `?model=`."""
        return await _answer(desk, request)

    @router.post("/v1/realtime/calls/{call_id}/hangup", responses=_HANGUP_ERRORS)
    async def hang_up(call_id: str, request: Request) -> Response:
        try:
            caller, _ = await _key_of(desk, request)
            if not await desk.calls.hang_up(call_id, _owner(caller.principal)):
                raise NotFound(f"No call '{call_id}' is open.", param="call_id", code="call_not_found")
        except APIError as exc:
            return exc.response()
        return Response(status_code=200)

    return router


async def _key_of(desk: CallDesk, request: Request) -> tuple[RealtimeCaller, dict[str, str]]:
    key = presented_key(request.headers)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return await desk.identify(headers, client_address(request)), headers


async def _answer(desk: CallDesk, request: Request) -> Response:
    """Admits the call (as a WebSocket session is admitted), then answers its offer; the slots are
    held until the call ends."""
    held = contextlib.AsyncExitStack()
    try:
        caller, headers = await _key_of(desk, request)
        principal = caller.principal
        offer, config = await _offer(request)
        if desk.calls.open >= desk.options.max_calls:
            raise TooManySessions(
                "This gateway has as many WebRTC calls open as it allows; try again shortly.", scope="replica"
            )
        current = desk.limits()
        await admit(held, desk.slots, desk.limiter, principal, current)
        model = model_asked(caller, {**config, **request.query_params})
        name = await model_for(desk.catalog, principal, model)
        loopback = loopback_for(request.scope, headers, caller)
        built: list[RealtimeSession] = []

        def build(send: Emit, audio_out: AudioOut) -> RealtimeSession:
            session = RealtimeSession(
                model=name, loopback=loopback, send=send, limits=current, audio_out=audio_out
            )
            built.append(session)
            return session

        call_id, sdp = await desk.calls.answer(offer, build, held.aclose, desk.options, _owner(principal))
    except APIError as exc:
        await held.aclose()
        if isinstance(exc, RateLimited) and exc.limit is not None and exc.scope is not None:
            desk.rejected(exc.limit, exc.scope)
        return exc.response()
    except BaseException:
        await held.aclose()
        raise
    # An ephemeral secret's session configuration, then the form's, as the first session.updates.
    if (opening := opening_update(caller)) is not None:
        await built[0].feed(opening)
    if config:
        await built[0].feed(orjson.dumps({"type": "session.update", "session": config}))
    return Response(
        sdp, status_code=201, media_type=_SDP, headers={"location": f"/v1/realtime/calls/{call_id}"}
    )


async def _offer(request: Request) -> tuple[str, dict[str, Any]]:
    """The SDP offer, and the session configuration sent beside it (multipart), if any."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    config: Any = {}
    if kind == _SDP:
        offer = await _read(request)
    elif kind == "multipart/form-data":
        form = await request.form()
        offer, session = await _field(form.get("sdp")), await _field(form.get("session"))
        try:
            config = orjson.loads(session) if session else {}
        except orjson.JSONDecodeError:
            raise InvalidRequest("`session` is not valid JSON.", param="session") from None
        if not isinstance(config, dict):
            raise InvalidRequest("`session` must be a JSON object.", param="session")
    else:
        raise InvalidRequest(
            "Send the SDP offer as application/sdp, or as multipart/form-data with `sdp` (and `session`).",
            param="content-type",
            code="unsupported_content_type",
        )
    if not offer.lstrip().startswith("v=0"):
        raise InvalidRequest("The body is not an SDP offer (it must begin with `v=0`).", param="sdp")
    return offer, config


async def _read(request: Request) -> str:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_OFFER:
            raise PayloadTooLarge(f"An SDP offer is at most {_MAX_OFFER} bytes.")
    return body.decode("utf-8", errors="replace")


async def _field(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    data = await value.read()  # a part sent as a file
    if len(data) > _MAX_OFFER:
        raise PayloadTooLarge(f"A form part is at most {_MAX_OFFER} bytes.")
    return bytes(data).decode("utf-8", errors="replace")


def _owner(principal: Principal) -> str:
    """Who may hang a call up: the key that opened it (the admin key has none)."""
    return principal.key_id or "admin"
