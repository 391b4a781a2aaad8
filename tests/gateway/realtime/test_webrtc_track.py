"""The gateway's outgoing WebRTC track (gateway/realtime/webrtc.py), alone: what it plays, and the
output_audio_buffer events it sends. No peer connection: frames are pulled as aiortc's sender would."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.realtime.webrtc import SpeechTrack


def tone(seconds: float, rate: int = 24_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes()


async def test_a_response_plays_then_stops_and_silence_follows() -> None:
    told: list[dict[str, Any]] = []

    async def events(event: dict[str, Any]) -> None:
        told.append(event)

    track = SpeechTrack()
    track.events = events
    await track.play("resp_1", tone(0.1))
    await track.finish("resp_1")
    assert told == [{"type": "output_audio_buffer.started", "response_id": "resp_1"}]
    loudness = []
    for _ in range(10):  # 200 ms: the tone's 100 ms, then silence
        frame = await track.recv()
        assert frame.sample_rate == 48_000 and frame.samples == 960
        loudness.append(float(np.abs(frame.to_ndarray()).mean()))
    assert min(loudness[:4]) > 1000 and max(loudness[6:]) == 0
    assert told[-1] == {"type": "output_audio_buffer.stopped", "response_id": "resp_1"}
    assert len(told) == 2
    track.stop()


async def test_clear_drops_what_was_not_played() -> None:
    told: list[dict[str, Any]] = []

    async def events(event: dict[str, Any]) -> None:
        told.append(event)

    track = SpeechTrack()
    track.events = events
    await track.clear()  # nothing playing: nothing to tell
    assert told == []
    await track.play("resp_2", tone(1.0))
    await track.recv()
    await track.clear()
    assert told[-1] == {"type": "output_audio_buffer.cleared", "response_id": "resp_2"}
    assert float(np.abs((await track.recv()).to_ndarray()).max()) == 0
    track.stop()
