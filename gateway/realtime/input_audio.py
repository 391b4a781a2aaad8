"""A realtime session's input audio buffer: `input_audio_buffer.append` / `.commit` / `.clear`,
and, with server VAD (`turn_detection: server_vad`, the detector in vad.py), the turns found in
what is appended: each one's start may interrupt the answer being given, its end commits it and
may ask for an answer. With noise suppression on (`TANTRA_AUDIO_NOISE_SUPPRESSION`), the detector
hears the audio gated block by block (adapters/stt/noise.py), up to 100 ms behind; the buffer keeps
the audio as sent."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from adapters.stt.noise import NoiseGate
from adapters.tts import SAMPLE_RATE
from gateway.realtime import g711, pcm
from gateway.realtime.conversation import Conversation, InputAudioPart, Message, created_event
from gateway.realtime.events import EventError, new_id
from gateway.realtime.input_transcription import InputTranscriber
from gateway.realtime.vad import SpeechDetector, Turn, VadSettings


class Speaker(Protocol):
    """What the input audio needs of its session."""

    async def emit(self, event: dict[str, Any]) -> None: ...

    async def error(self, problem: EventError, event_id: str | None) -> None: ...

    async def interrupt(self) -> None:
        """The user started speaking: stop the answer being given, if one is."""

    async def answer_turn(self) -> None:
        """The user's turn was committed: answer it, unless an answer is being given."""


class InputAudio:
    def __init__(
        self,
        conversation: Conversation,
        transcriber: InputTranscriber,
        session: Speaker,
        max_s: float,
        noise_suppression: float | None = None,
        requested_strength: float | None = None,
    ) -> None:
        self._conversation = conversation
        self._transcriber = transcriber
        self._session = session
        self._max_s = max_s  # the most audio held uncommitted, in seconds
        self._buffer = bytearray()
        # Server VAD: the detector, and the id the item of the turn in progress will have (sent
        # with speech_started).
        self._detector: SpeechDetector | None = None
        self._turn_item: str | None = None
        # The operator's gate, on for every session (TANTRA_AUDIO_NOISE_SUPPRESSION), or None; the
        # strength a session's own `input_audio_noise_reduction` turns the gate on at, or None.
        self._suppression = noise_suppression
        self._requested_strength = requested_strength
        self._gate: NoiseGate | None = None
        self._decode = g711.Decoder("pcm16")  # the session's input format to pcm16 at 24 kHz
        # GA's idle timeout: the audio (ms of the buffer's stream) since speech was last heard
        # or the timeout last fired.
        self._heard_ms = 0
        self._silent_since_ms = 0

    def decode_as(self, kind: g711.Format) -> None:
        if kind != self._decode.kind:
            self._decode = g711.Decoder(kind)

    def detect(self, vad: VadSettings | None, reduce_noise: bool = False) -> None:
        """Turn detection (none with `None`) starts afresh with the audio appended from now on; the
        detector hears it gated when the operator or the session (`reduce_noise`) asks for it."""
        self._detector = SpeechDetector(vad) if vad else None
        strength = self._suppression or (self._requested_strength if reduce_noise else None)
        self._gate = NoiseGate(SAMPLE_RATE, strength) if vad and strength else None
        self._turn_item = None
        self._buffer.clear()
        self._silent_since_ms = self._heard_ms

    async def append(self, audio: str) -> None:
        whole = self._decode.kind == "pcm16"
        await self.append_pcm(self._decode(pcm.decode(audio, "audio", whole_samples=whole)))

    async def append_pcm(self, chunk: bytes) -> None:
        """pcm16 at 24 kHz, decoded already (an `append` event's, or a WebRTC track's)."""
        if len(self._buffer) + len(chunk) > self._max_s * pcm.BYTES_PER_S:
            raise EventError(
                f"The input audio buffer would hold more than {self._max_s:g} s; commit or clear it first.",
                code="input_audio_buffer_full",
                param="audio",
            )
        self._buffer += chunk
        self._heard_ms += pcm.ms_of(len(chunk))
        if self._detector is not None:
            heard = chunk if self._gate is None else await asyncio.to_thread(self._gate, chunk)
            for turn in self._detector.feed(heard):
                await self._turn(turn)
            if not self._detector.speaking:
                self._trim_to_padding()
                await self._check_idle()

    async def _check_idle(self) -> None:
        """GA's `idle_timeout_ms`: that long without speech commits the silence and asks for an
        answer, after `input_audio_buffer.timeout_triggered`."""
        assert self._detector is not None
        timeout = self._detector.settings.idle_timeout_ms
        if timeout is None or self._heard_ms - self._silent_since_ms < timeout:
            return
        start, self._silent_since_ms = self._silent_since_ms, self._heard_ms
        item_id = new_id("item")
        await self._session.emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": start,
                "audio_end_ms": self._heard_ms,
                "item_id": item_id,
            }
        )
        await self._commit_turn(item_id)

    async def clear(self) -> None:
        self._buffer.clear()
        await self._session.emit({"type": "input_audio_buffer.cleared"})

    async def commit(self, item_id: str | None = None) -> None:
        """The buffer becomes a user item, transcribed in the background; the buffer is emptied."""
        if len(self._buffer) < pcm.MIN_COMMIT_BYTES:
            raise EventError(
                f"Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {len(self._buffer) / pcm.BYTES_PER_S * 1000:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        audio, self._buffer = bytes(self._buffer), bytearray()
        item = Message(item_id or new_id("item"), "user", [InputAudioPart()])
        previous = self._conversation.add(item)
        await self._session.emit(
            {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item.id}
        )
        await self._session.emit(created_event(item, previous))
        self._transcriber.start(item, 0, audio)

    def _trim_to_padding(self) -> None:
        """Between turns only the last `prefix_padding_ms` is kept: the lead-in of the next turn."""
        assert self._detector is not None
        keep = pcm.bytes_of(self._detector.settings.prefix_padding_ms)
        keep -= keep % 2
        if len(self._buffer) > keep:
            dropped = len(self._buffer) - keep
            del self._buffer[:dropped]

    async def _turn(self, turn: Turn) -> None:
        """A server-VAD edge: a start may interrupt the response being given; a stop commits the
        buffer and, unless told not to, asks for a response."""
        assert self._detector is not None
        settings = self._detector.settings
        if turn.edge == "start":
            self._turn_item = new_id("item")
            self._silent_since_ms = self._heard_ms
            await self._session.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": turn.ms,
                    "item_id": self._turn_item,
                }
            )
            if settings.interrupt_response:
                await self._session.interrupt()
            return
        item_id, self._turn_item = self._turn_item or new_id("item"), None
        self._silent_since_ms = self._heard_ms
        await self._session.emit(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": turn.ms, "item_id": item_id}
        )
        await self._commit_turn(item_id)

    async def _commit_turn(self, item_id: str) -> None:
        assert self._detector is not None
        settings = self._detector.settings
        try:
            await self.commit(item_id)
        except EventError as problem:  # a turn too short to commit: reported, the session goes on
            await self._session.error(problem, None)
            return
        if settings.create_response:
            await self._session.answer_turn()
