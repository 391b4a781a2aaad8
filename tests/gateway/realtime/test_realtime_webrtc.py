"""The Realtime API over WebRTC, driven by aiortc as the client against the real gateway, engine
and whisper.cpp: the offer POSTed to /v1/realtime/calls, eSpeak NG's sentence sent as the
microphone's Opus track, events on the `oai-events` data channel, the answer heard on the
gateway's track."""

from __future__ import annotations

import asyncio
import fractions
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.audio_samples import needs_espeak, spoken_sentence

pytestmark = pytest.mark.engine

TIMEOUT = 300.0  # whisper.cpp and the engine on a loaded 2-core machine
RATE = 48_000
FRAME = RATE // 50  # 20 ms
ANSWER_TOKENS = 24  # a few seconds of speech


def pcm16_48k(wav: bytes) -> bytes:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    with av.open(io.BytesIO(wav), mode="r") as source:
        for frame in [*source.decode(audio=0), None]:
            for converted in resampler.resample(frame):
                out += converted.to_ndarray().tobytes()
    return bytes(out)


class Microphone(MediaStreamTrack):
    """Plays `pcm` (48 kHz) once, in real time, after half a second of silence; silence after."""

    kind = "audio"

    def __init__(self, pcm: bytes) -> None:
        super().__init__()
        self._pcm = bytes(RATE) + pcm  # 0.5 s of silence first
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        await asyncio.sleep(max(0.0, self._start + self._sent / RATE - time.time()))
        chunk = self._pcm[self._sent * 2 : (self._sent + FRAME) * 2].ljust(FRAME * 2, b"\0")
        frame = av.AudioFrame.from_ndarray(np.frombuffer(chunk, np.int16).reshape(1, -1), layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._sent, fractions.Fraction(1, RATE)
        self._sent += FRAME
        return frame


class Call:
    """An aiortc peer connection to the gateway: its events, and the loudness of what it hears."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.channel = pc.createDataChannel("oai-events")
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self.loudest = 0.0  # the largest RMS of a 20 ms frame heard, in 16-bit units
        self.heard_frames = 0
        self.open = asyncio.Event()
        self.channel.on("message", lambda message: self.events.put_nowait(json.loads(message)))
        self.channel.on("open", self.open.set)
        self._listening: list[asyncio.Task[None]] = []
        pc.on("track", lambda track: self._listening.append(asyncio.create_task(self._listen(track))))

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            samples = frame.to_ndarray().astype(np.float64)
            self.heard_frames += 1
            self.loudest = max(self.loudest, float(np.sqrt(np.mean(samples**2))))

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def until(self, kind: str, *, errors_expected: bool = False) -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(self.events.get(), TIMEOUT)
            self.seen.append(event)
            if event["type"] == kind:
                return event
            assert event["type"] != "error" or errors_expected, event

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.seen if event["type"] == kind]


async def offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


@pytest.fixture
async def call(gateway_url: str, model: str, auth: dict[str, str]) -> AsyncIterator[Call]:
    pc = RTCPeerConnection()
    opened = Call(pc)
    pc.addTrack(Microphone(pcm16_48k(spoken_sentence())))
    async with httpx.AsyncClient(base_url=gateway_url, headers=auth, timeout=60) as client:
        # The form's `session` is the call's opening session.update: the answers are bounded, so
        # the random-weight model's speech (played in real time) ends within seconds.
        session = {"model": model, "max_response_output_tokens": ANSWER_TOKENS}
        answer = await client.post(
            "/v1/realtime/calls",
            files={"sdp": (None, await offer(pc)), "session": (None, json.dumps(session))},
        )
        assert answer.status_code == 201, answer.text
        assert answer.headers["content-type"].startswith("application/sdp")
        location = answer.headers["location"]
        assert location.startswith("/v1/realtime/calls/rtc_")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
        await asyncio.wait_for(opened.open.wait(), 30)
        try:
            yield opened
        finally:
            hung_up = await client.post(f"{location}/hangup")
            assert hung_up.status_code == 200, hung_up.text
            await pc.close()
            # The call is gone once hung up.
            assert (await client.post(f"{location}/hangup")).status_code == 404


@needs_espeak
async def test_speech_in_transcript_and_spoken_answer_out(call: Call) -> None:
    """The microphone's sentence is heard by server VAD, committed and transcribed; the answer
    plays on the gateway's track (no audio deltas on the data channel), with the
    output_audio_buffer events."""
    created = await call.until("session.created")
    assert created["session"]["turn_detection"]["type"] == "server_vad"
    updated = await call.until("session.updated")
    assert updated["session"]["max_response_output_tokens"] == ANSWER_TOKENS
    await call.until("input_audio_buffer.speech_started")
    stopped = await call.until("input_audio_buffer.speech_stopped")
    committed = await call.until("input_audio_buffer.committed")
    assert committed["item_id"] == stopped["item_id"]
    transcribed = await call.until("conversation.item.input_audio_transcription.completed")
    assert transcribed["item_id"] == committed["item_id"]
    assert isinstance(transcribed["transcript"], str)
    # The turn's answer (none when the random-weight whisper heard nothing: the conversation is
    # empty then). Random weights may also answer with nothing speakable: asked again, in text.
    done = await call.until("response.done", errors_expected=True)
    for attempt in range(4):
        response_id = done["response"]["id"]
        spoken = "".join(
            event["delta"]
            for event in call.of("response.audio_transcript.delta")
            if event["response_id"] == response_id
        )
        if done["response"]["status"] in ("completed", "incomplete") and any(ch.isalnum() for ch in spoken):
            break
        call.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": f"Say something, please ({attempt})."}],
                },
            }
        )
        call.send({"type": "response.create"})
        done = await call.until("response.done")
    else:
        pytest.fail("no answer had a word to speak")
    assert done["response"]["output"][0]["content"][0]["type"] == "audio"

    # Played in real time: the speech starts, then ends after the response does.
    def played() -> list[str]:
        return [
            event["type"]
            for event in call.seen
            if event["type"].startswith("output_audio_buffer.") and event.get("response_id") == response_id
        ]

    while "output_audio_buffer.stopped" not in played():
        await call.until("output_audio_buffer.stopped")
    assert played()[0] == "output_audio_buffer.started", played()
    assert played().count("output_audio_buffer.started") == 1, played()
    assert not call.of("response.audio.delta"), "audio deltas were sent over the data channel"
    assert call.heard_frames > 0
    assert call.loudest > 300, f"the answer was silent (largest frame RMS {call.loudest:.0f})"


async def test_offers_are_checked(gateway_url: str, auth: dict[str, str]) -> None:
    """A missing key, a wrong content type and a body that is no SDP get OpenAI's error envelope."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        keyless = await client.post(
            "/v1/realtime/calls", content="v=0\r\n", headers={"content-type": "application/sdp"}
        )
        assert keyless.status_code == 401 and keyless.json()["error"]["type"]
        wrong = await client.post("/v1/realtime/calls", json={"sdp": "v=0"}, headers=auth)
        assert wrong.status_code == 400
        assert wrong.json()["error"]["code"] == "unsupported_content_type"
        junk = await client.post(
            "/v1/realtime/calls", content="hello", headers={**auth, "content-type": "application/sdp"}
        )
        assert junk.status_code == 400 and junk.json()["error"]["param"] == "sdp"
        broken = await client.post(
            "/v1/realtime/calls",
            content="v=0\r\nm=audio nonsense\r\n",
            headers={**auth, "content-type": "application/sdp"},
        )
        assert broken.status_code == 400 and broken.json()["error"]["param"] == "sdp", broken.text
        missing = await client.post("/v1/realtime/calls/rtc_nope/hangup", headers=auth)
        assert missing.status_code == 404
