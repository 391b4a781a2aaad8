"""The Realtime API over WebRTC (aiortc): one peer connection per call, carrying the same session
as the WebSocket path (session.py) with its audio on media tracks.

The client's SDP offer is answered with host candidates (or those of the ICE servers configured).
Its microphone track is decoded from Opus (aiortc gives PyAV frames), resampled to pcm16 at 24 kHz
and heard by the session as appended audio, so server VAD, commits and transcription work as over
WebSocket. Spoken answers play on the gateway's own track (`SpeechTrack`, 48 kHz, Opus-encoded by
aiortc) instead of `response.audio.delta` events, with `output_audio_buffer.started/.stopped/.cleared`
as OpenAI sends them. Events travel as JSON text on the `oai-events` data channel, both ways.

A call ends when its data channel or peer connection closes, when it is hung up, or when it is not
connected `connect_timeout_s` after the answer; its session, tasks and slots are then released.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import orjson
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from adapters.tts import SAMPLE_RATE
from gateway.background import cancelled
from gateway.errors import InvalidRequest
from gateway.realtime.events import Emit, new_id
from gateway.realtime.session import RealtimeSession
from gateway.realtime.transport import AudioOut, WebRtcOptions

EVENTS_CHANNEL = "oai-events"
_RATE = 48_000  # Opus's clock
_FRAME = _RATE // 50  # 20 ms, a packet's audio
_OUTBOX = 256  # server events queued while the data channel opens or is slow

# Builds the call's session from where its events go and where its speech goes.
SessionFactory = Callable[[Emit, AudioOut], RealtimeSession]


class SpeechTrack(MediaStreamTrack):
    """The gateway's outgoing audio: the answers' speech, upsampled to 48 kHz and sent 20 ms at a
    time in real time, silence between them."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.events: Emit | None = None  # the session's emit, once it exists
        self._pcm = bytearray()  # 48 kHz pcm16 still to play
        self._upsample = _resampler(_RATE)
        self._playing: str | None = None  # the response whose speech is queued
        self._finished = False  # ... and it has no more to come
        self._start: float | None = None
        self._timestamp = 0

    async def play(self, response_id: str, pcm: bytes) -> None:
        if self._playing != response_id:
            if self._playing is not None:
                await self._tell("output_audio_buffer.stopped")
            self._playing, self._finished = response_id, False
            self._upsample = _resampler(_RATE)
            await self._tell("output_audio_buffer.started")
        self._pcm += _resample(self._upsample, pcm, SAMPLE_RATE)

    async def finish(self, response_id: str) -> None:
        if self._playing == response_id:
            self._pcm += _resample(self._upsample, None, SAMPLE_RATE)
            self._finished = True

    async def clear(self) -> None:
        if self._playing is not None:
            self._pcm.clear()
            await self._tell("output_audio_buffer.cleared")
            self._playing = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._timestamp += _FRAME
            await asyncio.sleep(max(0.0, self._start + self._timestamp / _RATE - time.time()))
        size = _FRAME * 2
        chunk = bytes(self._pcm[:size]).ljust(size, b"\0")
        del self._pcm[:size]
        if not self._pcm and self._finished and self._playing is not None:
            await self._tell("output_audio_buffer.stopped")
            self._playing = None
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(chunk, np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = _RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, _RATE)
        return frame

    async def _tell(self, kind: str) -> None:
        if self.events is not None:
            await self.events({"type": kind, "response_id": self._playing})


class Call:
    """One answered offer: the peer connection, its session and the tasks that serve it."""

    def __init__(self, pc: RTCPeerConnection, release: Callable[[], Any]) -> None:
        self.id = new_id("rtc")
        self.pc = pc
        self.speech = SpeechTrack()
        self.session: RealtimeSession | None = None
        self._release = release  # gives back the call's slots and leases (awaitable)
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_OUTBOX)
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._channel: RTCDataChannel | None = None
        self._open = asyncio.Event()  # the data channel
        self._ready = asyncio.Event()  # the session
        self._tasks: list[asyncio.Task[None]] = []
        self._ending: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()

    def wire(self) -> None:
        """The peer connection's events: the client's data channel and microphone, and its end."""
        pc = self.pc

        @pc.on("datachannel")
        def channel(opened: RTCDataChannel) -> None:
            if opened.label != EVENTS_CHANNEL or self._channel is not None:
                return
            self._channel = opened
            opened.on("message", self._inbox.put_nowait)
            opened.on("close", self.end_soon)
            if opened.readyState == "open":
                self._open.set()
            else:
                opened.on("open", self._open.set)

        @pc.on("track")
        def track(incoming: MediaStreamTrack) -> None:
            if incoming.kind == "audio":
                self._tasks.append(asyncio.create_task(self._hear(incoming)))

        @pc.on("connectionstatechange")
        def state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.end_soon()

    async def start(self, session: RealtimeSession, connect_timeout_s: float) -> None:
        self.session = session
        self.speech.events = session.emit
        self._ready.set()
        await session.start()  # session.created waits in the outbox for the channel
        for work in (self._write(), self._read(), self._expire(connect_timeout_s)):
            self._tasks.append(asyncio.create_task(work))

    async def send(self, event: dict[str, Any]) -> None:
        await self._outbox.put(event)

    def end_soon(self) -> None:
        if self._ending is None:
            self._ending = asyncio.ensure_future(self.end())

    async def end(self) -> None:
        """The session stops (its response and transcriptions), the connection closes, the slots
        are given back; once."""
        if self.ended.is_set():
            return
        self.ended.set()
        try:
            if self.session is not None:
                await self.session.close()
            for task in self._tasks:
                await cancelled(task)
            self.speech.stop()
            await self.pc.close()
        finally:
            await self._release()

    async def _write(self) -> None:
        await self._open.wait()
        while True:
            event = await self._outbox.get()
            channel = self._channel
            if channel is not None and channel.readyState == "open":
                channel.send(orjson.dumps(event).decode())

    async def _read(self) -> None:
        assert self.session is not None
        while True:
            await self.session.feed(await self._inbox.get())

    async def _hear(self, track: MediaStreamTrack) -> None:
        """The client's microphone: Opus decoded by aiortc, resampled to the session's 24 kHz."""
        downsample = _resampler(SAMPLE_RATE)
        await self._ready.wait()  # the track arrives with the offer, before the session exists
        assert self.session is not None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            for out in downsample.resample(frame):
                await self.session.hear(out.to_ndarray().tobytes())

    async def _expire(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if self.pc.connectionState != "connected":
            self.end_soon()


class WebRtcCalls:
    """This replica's open calls."""

    def __init__(self) -> None:
        self._calls: dict[str, tuple[Call, str]] = {}  # id: the call, its owner (the key)
        self._forgetting: set[asyncio.Future[None]] = set()

    @property
    def open(self) -> int:
        return len(self._calls)

    async def answer(
        self,
        offer: str,
        build: SessionFactory,
        release: Callable[[], Any],
        options: WebRtcOptions,
        owner: str,
    ) -> tuple[str, str]:
        """The call's id and the SDP answer; InvalidRequest if the offer cannot be used. `release`
        is awaited once the call has ended (also when answering fails)."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=_ice_servers(options)))
        call = Call(pc, release)
        try:
            call.wire()
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            except Exception as exc:  # aiortc's parser raises what it meets: all mean a bad offer
                raise InvalidRequest(f"The SDP offer cannot be used: {exc}", param="sdp") from None
            if not any(t.kind == "audio" for t in pc.getTransceivers()):
                raise InvalidRequest("The SDP offer has no audio media section.", param="sdp")
            pc.addTrack(call.speech)
            await pc.setLocalDescription(await pc.createAnswer())
            await call.start(build(call.send, call.speech), options.connect_timeout_s)
        except BaseException:
            await call.end()
            raise
        self._calls[call.id] = (call, owner)
        self._forgetting.add(asyncio.ensure_future(self._forget(call)))
        return call.id, pc.localDescription.sdp

    async def hang_up(self, call_id: str, owner: str) -> bool:
        """Ends the call if `owner` opened it; False if there is no such call of theirs."""
        found = self._calls.get(call_id)
        if found is None or found[1] != owner:
            return False
        await found[0].end()
        return True

    async def close(self) -> None:
        for call, _ in list(self._calls.values()):
            await call.end()

    async def _forget(self, call: Call) -> None:
        await call.ended.wait()
        self._calls.pop(call.id, None)
        self._forgetting = {task for task in self._forgetting if not task.done()}


def _ice_servers(options: WebRtcOptions) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=url, username=options.ice_username, credential=options.ice_credential)
        for url in options.ice_servers
    ]


def _resampler(rate: int) -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=rate)


def _resample(resampler: av.AudioResampler, pcm: bytes | None, rate: int) -> bytes:
    """pcm16 mono at `rate` through `resampler` (None: what it still holds)."""
    frame = None
    if pcm is not None:
        samples = np.frombuffer(pcm, np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
    with contextlib.suppress(ValueError):
        return b"".join(out.to_ndarray().tobytes() for out in resampler.resample(frame))
    return b""
