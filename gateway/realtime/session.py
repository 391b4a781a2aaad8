"""One /v1/realtime connection: client events in, OpenAI's server events out.

The session parses each client event and hands it to its handler (one table: event type ->
handler); its parts do the work: the conversation (conversation.py), the input audio buffer and
its turns (input_audio.py), the transcription of committed audio (input_transcription.py) and
the response being given (response.py). Every model call goes through the gateway's own HTTP endpoints
by the in-process loopback (`Loopback`): a response is a streamed chat completion, committed audio
a transcription (`/v1/audio/transcriptions`), spoken output one speech request per sentence
(`/v1/audio/speech`, pcm). So the session needs no engine client, limiter or ledger of its own,
and each of those calls is limited and accounted for the connection's key as over HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import orjson

from gateway.protocol.common import InvalidParam
from gateway.protocol.realtime import (
    CLIENT_EVENT_TYPES,
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
from gateway.realtime import ga
from gateway.realtime.conversation import Conversation, Message, created_event, message_of
from gateway.realtime.events import Emit, EventError, new_id
from gateway.realtime.input_audio import InputAudio
from gateway.realtime.input_transcription import InputTranscriber
from gateway.realtime.loopback import Loopback
from gateway.realtime.response import Plan, Response
from gateway.realtime.vad import VadSettings

_Event = TypeVar("_Event", bound=ClientEvent)
_Handler = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class RealtimeLimits:
    max_audio_buffer_s: float = 60.0
    max_items: int = 512
    transcription_model: str = "whisper-1"
    speech_model: str = "tts-1"
    # Sessions open at once on this replica and per key (gateway/realtime/slots.py), and how long
    # a session may go without a client event while nothing runs before it is closed.
    max_sessions: int = 100
    max_sessions_per_key: int = 4
    idle_timeout_s: float = 120.0


@dataclass
class SessionConfig:
    """What `session.update` sets; `describe()` is the `session` of `session.created`/`.updated`."""

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

    def __init__(self, *, model: str, loopback: Loopback, send: Emit, limits: RealtimeLimits) -> None:
        self._config = SessionConfig(id=new_id("sess"), model=model)
        self._loopback = loopback
        self._send = send
        self._limits = limits
        self._ga = False  # the client speaks the GA shapes (gateway/realtime/ga.py)
        self._conversation = Conversation(limits.max_items)
        self._transcriber = InputTranscriber(
            loopback, self.emit, limits.transcription_model, lambda: self._config.transcription
        )
        self._audio = InputAudio(self._conversation, self._transcriber, self, limits.max_audio_buffer_s)
        self._response: Response | None = None
        self._handlers = dict(
            [
                _route(SessionUpdateEvent, self._update),
                _route(AppendAudioEvent, lambda event: self._audio.append(event.audio)),
                _route(CommitAudioEvent, lambda _: self._audio.commit()),
                _route(ClearAudioEvent, lambda _: self._audio.clear()),
                _route(CreateItemEvent, self._create_item),
                _route(DeleteItemEvent, self._delete_item),
                _route(TruncateItemEvent, self._truncate_item),
                _route(RetrieveItemEvent, self._retrieve_item),
                _route(CreateResponseEvent, lambda event: self._create_response(event.response)),
                _route(CancelResponseEvent, lambda event: self._cancel_response(event.response_id)),
            ]
        )
        assert set(self._handlers) == set(CLIENT_EVENT_TYPES)

    async def start(self) -> None:
        await self.emit({"type": "session.created", "session": self._config.describe()})

    async def close(self) -> None:
        """The client left: stop the running response (and its engine request) and transcriptions."""
        if self._response is not None:
            await self._response.cancel()
        self._transcriber.cancel()

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
                raise EventError(exc.message, code=exc.code or "invalid_value", param=exc.param) from None
            await self._handlers[event.type](event)
        except EventError as problem:
            await self.error(problem, event_id)

    async def _update(self, event: SessionUpdateEvent) -> None:
        update, given = event.session, event.session.model_fields_set
        vad = VadSettings.parse(update.turn_detection) if update.turn_detection is not None else None
        if update.tools:
            raise EventError(
                "Function calling is not supported over /v1/realtime yet.",
                code="unsupported_tools",
                param="session.tools",
            )
        config = self._config
        if update.modalities is not None:
            config.modalities = _modalities(update.modalities, "session.modalities")
        if update.instructions is not None:
            config.instructions = update.instructions
        if update.voice is not None:
            config.voice = update.voice
        if update.speed is not None:
            config.speed = update.speed
        if "temperature" in given:
            config.temperature = update.temperature
        if "max_response_output_tokens" in given:
            config.max_output_tokens = _token_cap(update.max_response_output_tokens)
        if "input_audio_transcription" in given:
            config.transcription = update.input_audio_transcription
        if "turn_detection" in given and vad != config.turn_detection:
            config.turn_detection = vad
            self._audio.detect(vad)
        await self.emit({"type": "session.updated", "session": config.describe()})

    async def _create_item(self, event: CreateItemEvent) -> None:
        item, audio = message_of(event.item)
        self._conversation.check_new(event.item.id)
        previous = self._conversation.add(item, after=event.previous_item_id)
        await self.emit(created_event(item, previous))
        for index, pcm in audio:
            self._transcriber.start(item, index, pcm)

    async def _delete_item(self, event: DeleteItemEvent) -> None:
        self._conversation.delete(event.item_id)
        await self.emit({"type": "conversation.item.deleted", "item_id": event.item_id})

    async def _truncate_item(self, event: TruncateItemEvent) -> None:
        self._conversation.truncate(event.item_id, event.content_index, event.audio_end_ms)
        await self.emit(
            {
                "type": "conversation.item.truncated",
                "item_id": event.item_id,
                "content_index": event.content_index,
                "audio_end_ms": event.audio_end_ms,
            }
        )

    async def _retrieve_item(self, event: RetrieveItemEvent) -> None:
        item = self._conversation.get(event.item_id)
        await self.emit({"type": "conversation.item.retrieved", "item": item.describe()})

    async def _create_response(self, options: ResponseOptions) -> None:
        if (running := self._running()) is not None:
            raise EventError(
                f"Conversation already has an active response in progress: {running.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        config = self._config
        modalities = (
            _modalities(options.modalities, "response.modalities")
            if options.modalities
            else config.modalities
        )
        given = options.model_fields_set
        cap = (
            options.max_output_tokens if "max_output_tokens" in given else options.max_response_output_tokens
        )
        plan = Plan(
            modalities=modalities,
            instructions=options.instructions if options.instructions is not None else config.instructions,
            voice=options.voice or config.voice,
            speed=config.speed,
            temperature=options.temperature if options.temperature is not None else config.temperature,
            max_tokens=_token_cap(cap)
            if {"max_output_tokens", "max_response_output_tokens"} & given
            else config.max_output_tokens,
        )
        self._response = Response(self, plan, self._limits)
        await self._response.start()

    async def _cancel_response(self, response_id: str | None) -> None:
        running = self._running()
        if running is None or (response_id is not None and response_id != running.id):
            raise EventError(
                "Cancellation failed: no active response found.", code="response_cancel_not_active"
            )
        await running.cancel()

    @property
    def busy(self) -> bool:
        """A response is being given or audio transcribed: the session is not idle even if the
        client says nothing (the client is waiting for the gateway)."""
        return self._running() is not None or self._transcriber.running

    def _running(self) -> Response | None:
        """The response being given, if one is."""
        return self._response if self._response is not None and not self._response.done else None

    # What the input audio's turns need of the session (input_audio.Speaker).
    async def interrupt(self) -> None:
        if (running := self._running()) is not None:
            await running.cancel()

    async def answer_turn(self) -> None:
        if self._running() is None:
            await self._create_response(ResponseOptions())

    # What a response needs of the session.
    async def wait_for_transcripts(self) -> None:
        await self._transcriber.wait()

    def messages(self, instructions: str) -> list[dict[str, str]]:
        return self._conversation.messages(instructions)

    def remember(self, item: Message) -> None:
        """A response's answer joins the conversation."""
        self._conversation.remember(item)

    @property
    def model(self) -> str:
        return self._config.model

    @property
    def loopback(self) -> Loopback:
        return self._loopback


def _route(kind: type[_Event], handler: Callable[[_Event], Awaitable[None]]) -> tuple[str, _Handler]:
    """One row of the dispatch table: the event type `kind` parses, and its handler."""
    (name,) = get_args(kind.model_fields["type"].annotation)
    return name, handler


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
