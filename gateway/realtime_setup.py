"""The Realtime API's routes for the composition root (docs/realtime.md): the WebSocket at
/v1/realtime, the ephemeral client secrets that open it and, when aiortc (the `webrtc` extra) is
installed and the setting is on, its WebRTC calls. Both transports share this replica's session
slots, so its caps count them together."""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

from gateway.auth import Principal
from gateway.auth.ephemeral import EphemeralKeys, RealtimeGate
from gateway.realtime.slots import SessionSlots
from gateway.realtime.transport import WebRtcOptions
from gateway.routes import realtime_router
from gateway.routes.realtime_secrets import realtime_secrets_router

if TYPE_CHECKING:
    from gateway.components import Components
    from gateway.realtime.webrtc import WebRtcCalls

_log = logging.getLogger("tantra.gateway")


def include_realtime(app: FastAPI, parts: Components) -> WebRtcCalls | None:
    """The realtime routes; the WebRTC calls (to close at shutdown), or None when not served."""
    settings, access = parts.settings, parts.access
    gate, rejected = access.admission.gate, parts.metrics.rejected
    keys = EphemeralKeys(parts.shared.redis)

    async def act_as(key_id: str | None) -> Principal:
        return await gate.act_as(key_id, None, parts.policy.current)

    identify = RealtimeGate(gate.authenticate, act_as, keys).identify
    slots = SessionSlots()
    app.include_router(realtime_secrets_router(parts.catalog, gate.authenticate, keys))
    app.include_router(
        realtime_router(parts.catalog, identify, parts.realtime_limits, access.limiter, rejected, slots)
    )
    if not settings.realtime_webrtc_enabled:
        return None
    if importlib.util.find_spec("aiortc") is None:
        _log.warning("realtime over WebRTC is not served: aiortc is not installed (the `webrtc` extra)")
        return None
    from gateway.realtime.webrtc import WebRtcCalls
    from gateway.routes.realtime_calls import CallDesk, realtime_calls_router

    credential = settings.realtime_webrtc_ice_credential
    options = WebRtcOptions(
        max_calls=settings.realtime_webrtc_max_calls,
        ice_servers=tuple(settings.realtime_webrtc_ice_servers),
        ice_username=settings.realtime_webrtc_ice_username,
        ice_credential=credential.get_secret_value() if credential is not None else None,
        connect_timeout_s=settings.realtime_webrtc_connect_timeout_s,
    )
    calls = WebRtcCalls()
    desk = CallDesk(
        parts.catalog, identify, parts.realtime_limits, access.limiter, slots, calls, options, rejected
    )
    app.include_router(realtime_calls_router(desk))
    return calls
