"""What a realtime session needs of the transport that carries it, beyond its events.

Over WebSocket everything is an event: input audio arrives as `input_audio_buffer.append`, spoken
answers leave as `response.audio.delta`. Over WebRTC (webrtc.py) audio has its own media track
both ways: the transport feeds the session decoded input (`RealtimeSession.hear`) and hands it an
`AudioOut` that plays the answers, and the session then sends no audio deltas, as OpenAI's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class AudioOut(Protocol):
    """A transport's outgoing speech: pcm16 mono at 24 kHz, played in real time. It sends
    `output_audio_buffer.started` when a response's audio begins to play, `.stopped` when all of
    it was played and `.cleared` when it was cut short."""

    async def play(self, response_id: str, pcm: bytes) -> None:
        """More of `response_id`'s speech, queued behind what is still playing."""

    async def finish(self, response_id: str) -> None:
        """`response_id` has no more speech: once what is queued is played, it has stopped."""

    async def clear(self) -> None:
        """Drop the speech not yet played (the user interrupted, or the client asked)."""


@dataclass(frozen=True)
class WebRtcOptions:
    """How this replica answers WebRTC calls (TANTRA_REALTIME_WEBRTC_*)."""

    max_calls: int = 16
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs; none: host candidates only
    ice_username: str | None = None
    ice_credential: str | None = None
    connect_timeout_s: float = 30.0
