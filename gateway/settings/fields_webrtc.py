"""The WebRTC transport of the Realtime API (`TANTRA_REALTIME_WEBRTC_*`, docs/realtime.md): an SDP
offer POSTed to /v1/realtime/calls, audio over RTP (Opus), events over the `oai-events` data channel.

A mixin of `Settings` (through the audio fields), kept apart so the schema stays readable.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class WebRtcFields(BaseModel):
    """The calls a replica answers, and the ICE servers its peer connections gather candidates with."""

    realtime_webrtc_enabled: bool = Field(
        True,
        description="Answer WebRTC calls of the Realtime API (POST /v1/realtime/calls, and beta's POST "
        "/v1/realtime with an SDP offer); needs the `webrtc` extra (aiortc).",
    )
    # Each call holds UDP ports and decodes and encodes Opus in this process: capped apart from the
    # WebSocket sessions (every call is also one of the realtime sessions counted there).
    realtime_webrtc_max_calls: int = Field(
        16, ge=1, description="WebRTC calls open at once on one replica; more get 429."
    )
    realtime_webrtc_ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN server URLs the gateway's peer connections use (for example "
        '["stun:stun.example.org:3478", "turn:turn.example.org:3478?transport=udp"]); empty: host '
        "candidates only, enough when clients reach the replica's address directly.",
    )
    realtime_webrtc_ice_username: str | None = Field(
        None, description="The username for the TURN servers of realtime_webrtc_ice_servers."
    )
    realtime_webrtc_ice_credential: SecretStr | None = Field(
        None, description="The credential for the TURN servers of realtime_webrtc_ice_servers."
    )
    realtime_webrtc_connect_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A WebRTC call whose peer connection is not established this long after its answer "
        "is ended, freeing its slot.",
    )
