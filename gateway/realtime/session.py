"""One /v1/realtime conversation: client events in, OpenAI's server events out.

The conversation lives here; every model call goes through the gateway's own HTTP endpoints by
the in-process loopback (`Loopback`): a response is a streamed chat completion, committed audio a
transcription (`/v1/audio/transcriptions`), spoken output one speech request per sentence
(`/v1/audio/speech`, pcm). So the session needs no engine client, limiter or ledger of its own,
and each of those calls is limited and accounted for the connection's key as over HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapters.tts import wav_header
from gateway.protocol.common import InvalidParam
from gateway.protocol.realtime import (
    AppendAudioEvent,
    CancelResponseEvent,
    ClearAudioEvent,
    ClientEvent,
    CommitAudioEvent,
    CreateItemEvent,
    CreateResponseEvent,
    DeleteItemEvent,
    ResponseOptions,
    RetrieveItemEvent,
    SessionUpdateEvent,
    TruncateItemEvent,
    parse_client_event,
)
from gateway.realtime import ga, pcm
from gateway.realtime.conversation import (
    Conversation,
    InputAudioPart,
    Message,
    created_event,
    message_of,
)
from gateway.realtime.events import EventError, failure_of, new_id
from gateway.realtime.loopback import Loopback, read_all
from gateway.realtime.response import Plan, Response
from gateway.realtime.vad import SpeechDetector, Turn, VadSettings


@dataclass(frozen=True)
class RealtimeLimits:
    max_audio_buffer_s: float = 300.0
    max_items: int = 512
    transcription_model: str = "whisper-1"
    speech_model: str = "tts-1"


@dataclass
class _Session:
    id: str
    model: str
    modalities: list[str] = field(default_factory=lambda: ["text", "audio"])
    instructions: str = ""
    voice: str = "alloy"
    speed: float = 1.0
    temperature: float | None = None
    max_output_tokens: int | None = None
    transcription: dict[str, Any] | None = None
    turn_detection: VadSettings | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.session",
            "model": self.model,
            "modalities": self.modalities,
            "instructions": self.instructions,
            "voice": self.voice,
            "speed": self.speed,
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": self.transcription,
            "turn_detection": self.turn_detection.describe() if self.turn_detection else None,
            "tools": [],
            "tool_choice": "none",
            "temperature": self.temperature,
            "max_response_output_tokens": self.max_output_tokens if self.max_output_tokens else "inf",
        }


class RealtimeSession:
    """Runs one connection: `feed` takes each client message; `send` writes server events."""

    def __init__(
        self,
        *,
        model: str,
        loopback: Loopback,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        limits: RealtimeLimits,
    ) -> None:
        self._session = _Session(id=new_id("sess"), model=model)
        self._loopback = loopback
        self._send = send
        self._limits = limits
        self._conversation = Conversation(limits.max_items)
        self._audio = bytearray()
        self._transcribing: dict[str, asyncio.Task[None]] = {}
        self._response: Response | None = None
        # Server VAD: the detector, and the id the item of the turn in progress will have (sent
        # with speech_started).
        self._detector: SpeechDetector | None = None
        self._turn_item: str | None = None
        self._ga = False  # the client speaks the GA shapes (gateway/realtime/ga.py)

    async def start(self) -> None:
        await self.emit({"type": "session.created", "session": self._session.describe()})

    async def close(self) -> None:
        """The client left: stop the running response (and its engine request) and transcriptions."""
        if self._response is not None:
            await self._response.cancel()
        for task in self._transcribing.values():
            task.cancel()

    async def emit(self, event: dict[str, Any]) -> None:
        if self._ga:
            event = ga.server_event(event)
        await self._send({"event_id": new_id("event"), **event})

    async def error(self, problem: EventError, event_id: str | None) -> None:
        await self.emit(
            {
                "type": "error",
                "error": {
                    "type": problem.kind,
                    "code": problem.code,
                    "message": problem.message,
                    "param": problem.param,
                    "event_id": event_id,
                },
            }
        )

    async def feed(self, message: str | bytes) -> None:
        """One message from the client. Every problem is answered with an `error` event."""
        event_id = None
        try:
            try:
                payload = orjson.loads(message)
            except orjson.JSONDecodeError:
                raise EventError("The event is not valid JSON.", code="invalid_json") from None
            if isinstance(payload, dict) and isinstance(payload.get("event_id"), str):
                event_id = payload["event_id"]
            if ga.is_ga_update(payload):
                self._ga = True
            if self._ga and isinstance(payload, dict):
                payload = ga.client_event(payload)
            try:
                event = parse_client_event(payload)
            except InvalidParam as exc:
                raise EventError(exc.message, code="invalid_value", param=exc.param) from None
            await self._handle(event)
        except EventError as problem:
            await self.error(problem, event_id)

    async def _handle(self, event: ClientEvent) -> None:
        if isinstance(event, SessionUpdateEvent):
            await self._update(event)
        elif isinstance(event, AppendAudioEvent):
            await self._append(event.audio)
        elif isinstance(event, CommitAudioEvent):
            await self._commit()
        elif isinstance(event, ClearAudioEvent):
            self._audio.clear()
            await self.emit({"type": "input_audio_buffer.cleared"})
        elif isinstance(event, CreateItemEvent):
            await self._create_item(event)
        elif isinstance(event, DeleteItemEvent):
            await self._delete_item(event.item_id)
        elif isinstance(event, TruncateItemEvent):
            await self._truncate(event)
        elif isinstance(event, RetrieveItemEvent):
            item = self._conversation.get(event.item_id)
            await self.emit({"type": "conversation.item.retrieved", "item": item.describe()})
        elif isinstance(event, CreateResponseEvent):
            await self._create_response(event.response)
        elif isinstance(event, CancelResponseEvent):
            await self._cancel_response(event.response_id)

    async def _update(self, event: SessionUpdateEvent) -> None:
        update, given = event.session, event.session.model_fields_set
        vad = VadSettings.parse(update.turn_detection) if update.turn_detection is not None else None
        if update.tools:
            raise EventError(
                "Function calling is not supported over /v1/realtime yet.",
                code="unsupported_tools",
                param="session.tools",
            )
        state = self._session
        if update.modalities is not None:
            state.modalities = _modalities(update.modalities, "session.modalities")
        if update.instructions is not None:
            state.instructions = update.instructions
        if update.voice is not None:
            state.voice = update.voice
        if update.speed is not None:
            state.speed = update.speed
        if "temperature" in given:
            state.temperature = update.temperature
        if "max_response_output_tokens" in given:
            state.max_output_tokens = _token_cap(update.max_response_output_tokens)
        if "input_audio_transcription" in given:
            state.transcription = update.input_audio_transcription
        if "turn_detection" in given and vad != state.turn_detection:
            state.turn_detection = vad
            # Detection starts afresh with the audio appended from now on.
            self._detector = SpeechDetector(vad) if vad else None
            self._turn_item = None
            self._audio.clear()
        await self.emit({"type": "session.updated", "session": state.describe()})

    async def _append(self, audio: str) -> None:
        chunk = pcm.decode(audio, "audio")
        if len(self._audio) + len(chunk) > self._limits.max_audio_buffer_s * pcm.BYTES_PER_S:
            raise EventError(
                f"The input audio buffer would hold more than {self._limits.max_audio_buffer_s:g} s; "
                "commit or clear it first.",
                code="input_audio_buffer_full",
                param="audio",
            )
        self._audio += chunk
        if self._detector is not None:
            for turn in self._detector.feed(chunk):
                await self._turn(turn)
            if not self._detector.speaking:
                self._trim_to_padding()

    def _trim_to_padding(self) -> None:
        """Between turns only the last `prefix_padding_ms` is kept: the lead-in of the next turn."""
        assert self._detector is not None
        keep = pcm.bytes_of(self._detector.settings.prefix_padding_ms)
        keep -= keep % 2
        if len(self._audio) > keep:
            dropped = len(self._audio) - keep
            del self._audio[:dropped]

    async def _turn(self, turn: Turn) -> None:
        """A server-VAD edge: a start may interrupt the response being given; a stop commits the
        buffer and, unless told not to, asks for a response."""
        assert self._detector is not None
        settings = self._detector.settings
        if turn.edge == "start":
            self._turn_item = new_id("item")
            await self.emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": turn.ms,
                    "item_id": self._turn_item,
                }
            )
            if settings.interrupt_response and self._response is not None and not self._response.done:
                await self._response.cancel()
            return
        item_id, self._turn_item = self._turn_item or new_id("item"), None
        await self.emit(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": turn.ms, "item_id": item_id}
        )
        try:
            await self._commit(item_id)
        except EventError as problem:  # a turn too short to commit: reported, the session goes on
            await self.error(problem, None)
            return
        if settings.create_response and (self._response is None or self._response.done):
            await self._create_response(ResponseOptions())

    async def _commit(self, item_id: str | None = None) -> None:
        if len(self._audio) < pcm.MIN_COMMIT_BYTES:
            raise EventError(
                f"Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {len(self._audio) / pcm.BYTES_PER_S * 1000:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        audio, self._audio = bytes(self._audio), bytearray()
        item = Message(item_id or new_id("item"), "user", [InputAudioPart()])
        previous = self._conversation.add(item)
        await self.emit(
            {"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item.id}
        )
        await self.emit(created_event(item, previous))
        self._transcribe(item, 0, audio)

    async def _create_item(self, event: CreateItemEvent) -> None:
        item, audio = message_of(event.item)
        self._conversation.check_new(event.item.id)
        previous = self._conversation.add(item, after=event.previous_item_id)
        await self.emit(created_event(item, previous))
        for index, data in audio:
            self._transcribe(item, index, data)

    async def _delete_item(self, item_id: str) -> None:
        self._conversation.delete(item_id)
        await self.emit({"type": "conversation.item.deleted", "item_id": item_id})

    async def _truncate(self, event: TruncateItemEvent) -> None:
        self._conversation.truncate(event.item_id, event.content_index, event.audio_end_ms)
        await self.emit(
            {
                "type": "conversation.item.truncated",
                "item_id": event.item_id,
                "content_index": event.content_index,
                "audio_end_ms": event.audio_end_ms,
            }
        )

    def _transcribe(self, item: Message, index: int, audio: bytes) -> None:
        """Transcribe in the background; a response created meanwhile waits for the transcript."""
        key = f"{item.id}:{index}"
        self._transcribing[key] = asyncio.create_task(self._run_transcription(item, index, audio))
        self._transcribing[key].add_done_callback(lambda _: self._transcribing.pop(key, None))

    async def _run_transcription(self, item: Message, index: int, audio: bytes) -> None:
        part = item.content[index]
        assert isinstance(part, InputAudioPart)
        options = self._session.transcription or {}
        fields = {
            "model": str(options.get("model") or self._limits.transcription_model),
            "response_format": "json",
        }
        for name in ("language", "prompt"):
            if isinstance(options.get(name), str):
                fields[name] = options[name]
        boundary = uuid.uuid4().hex
        body = _multipart(boundary, fields, "audio.wav", wav_header(len(audio)) + audio)
        try:
            async with self._loopback.post(
                "/v1/audio/transcriptions",
                body,
                asyncio.Event(),
                content_type=f"multipart/form-data; boundary={boundary}",
            ) as answer:
                raw = await read_all(answer.chunks)
            payload = orjson.loads(raw) if raw else {}
            if answer.status != 200:
                raise failure_of(payload, answer.status)
            transcript = str(payload.get("text", "")).strip()
        except EventError as problem:
            part.transcript = ""
            await self.emit(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item.id,
                    "content_index": index,
                    "error": {
                        "type": problem.kind,
                        "code": problem.code,
                        "message": problem.message,
                        "param": problem.param,
                    },
                }
            )
            return
        part.transcript = transcript
        await self.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": index,
                "transcript": transcript,
            }
        )

    async def _create_response(self, options: ResponseOptions) -> None:
        if self._response is not None and not self._response.done:
            raise EventError(
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        state = self._session
        modalities = (
            _modalities(options.modalities, "response.modalities") if options.modalities else state.modalities
        )
        given = options.model_fields_set
        cap = (
            options.max_output_tokens if "max_output_tokens" in given else options.max_response_output_tokens
        )
        plan = Plan(
            modalities=modalities,
            instructions=options.instructions if options.instructions is not None else state.instructions,
            voice=options.voice or state.voice,
            speed=state.speed,
            temperature=options.temperature if options.temperature is not None else state.temperature,
            max_tokens=_token_cap(cap)
            if {"max_output_tokens", "max_response_output_tokens"} & given
            else state.max_output_tokens,
        )
        self._response = Response(self, plan, self._limits)
        await self._response.start()

    async def _cancel_response(self, response_id: str | None) -> None:
        running = self._response
        if running is None or running.done or (response_id is not None and response_id != running.id):
            raise EventError(
                "Cancellation failed: no active response found.", code="response_cancel_not_active"
            )
        await running.cancel()

    # What a response needs of the session.
    async def wait_for_transcripts(self) -> None:
        while self._transcribing:
            await asyncio.gather(*self._transcribing.values(), return_exceptions=True)

    def messages(self, instructions: str) -> list[dict[str, str]]:
        return self._conversation.messages(instructions)

    def remember(self, item: Message) -> None:
        """A response's answer joins the conversation."""
        self._conversation.remember(item)

    @property
    def model(self) -> str:
        return self._session.model

    @property
    def loopback(self) -> Loopback:
        return self._loopback


def _modalities(given: Sequence[str], param: str) -> list[str]:
    if set(given) not in ({"text"}, {"text", "audio"}):
        raise EventError(
            "Invalid modalities: only ['text'] and ['text', 'audio'] are supported.",
            code="invalid_value",
            param=param,
        )
    return ["text", "audio"] if "audio" in given else ["text"]


def _token_cap(value: int | str | None) -> int | None:
    if value is None or value == "inf":
        return None
    assert isinstance(value, int)
    if value < 1:
        raise EventError(
            "The output token cap must be at least 1 or 'inf'.",
            code="invalid_value",
            param="max_response_output_tokens",
        )
    return value


def _multipart(boundary: str, fields: dict[str, str], filename: str, data: bytes) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    return b"".join(parts) + head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
