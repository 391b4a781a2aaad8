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

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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
    TranscriptionSessionUpdateEvent,
    TruncateItemEvent,
    parse_client_event,
)
from gateway.realtime import ga
from gateway.realtime.conversation import Conversation, Entry, Message, created_event, item_of
from gateway.realtime.events import Emit, EventError, new_id, rate_limits_event
from gateway.realtime.input_audio import InputAudio
from gateway.realtime.input_transcription import InputTranscriber
from gateway.realtime.loopback import Loopback
from gateway.realtime.response import Response
from gateway.realtime.session_config import SessionConfig
from gateway.realtime.transport import AudioOut

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
    # Noise suppression's strength before server VAD (adapters/stt/noise.py) for every session;
    # None: off, unless a session asks (`input_audio_noise_reduction`), then at `noise_strength`.
    noise_suppression: float | None = None
    noise_strength: float | None = None


class RealtimeSession:
    """Runs one connection: `feed` takes each client message; `send` writes server events."""

    def __init__(
        self,
        *,
        model: str,
        loopback: Loopback,
        send: Emit,
        limits: RealtimeLimits,
        audio_out: AudioOut | None = None,
    ) -> None:
        """`audio_out`: the transport plays spoken answers itself (WebRTC's track), and no
        `response.audio.delta` is sent; None: they are events (WebSocket)."""
        self.audio_out = audio_out
        self._overflowing = False  # the transport's audio found the input buffer full
        self._config = SessionConfig(id=new_id("sess"), model=model)
        self._loopback = loopback
        self._send = send
        self._limits = limits
        self._ga = False  # the client speaks the GA shapes (gateway/realtime/ga.py)
        self._conversation = Conversation(limits.max_items)
        self._transcriber = InputTranscriber(
            loopback, self.emit, limits.transcription_model, lambda: self._config.transcription
        )
        self._audio = InputAudio(
            self._conversation,
            self._transcriber,
            self,
            limits.max_audio_buffer_s,
            limits.noise_suppression,
            limits.noise_strength,
        )
        self._audio.detect(self._config.turn_detection)
        self._response: Response | None = None  # the last in-band response
        self._out_of_band: set[Response] = set()  # out-of-band responses (`conversation: "none"`) running
        self._handlers = dict(
            [
                _route(SessionUpdateEvent, self._update),
                _route(TranscriptionSessionUpdateEvent, self._update_transcription),
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
        for response in [self._response, *self._out_of_band]:
            if response is not None:
                await response.cancel()
        self._transcriber.cancel()

    async def emit(self, event: dict[str, Any]) -> None:
        for out in ga.server_events(event, ga=self._ga):
            await self._send({"event_id": new_id("event"), **out})

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

    async def hear(self, audio: bytes) -> None:
        """Input audio from the transport's own track (pcm16 at 24 kHz), as `input_audio_buffer.append`
        would add it; a problem (the buffer full without turn detection) is an `error` event."""
        try:
            await self._audio.append_pcm(audio)
            self._overflowing = False
        except EventError as problem:
            # A track sends 50 frames a second: a full buffer is told once, not for each frame.
            if not self._overflowing:
                await self.error(problem, None)
            self._overflowing = problem.code == "input_audio_buffer_full"

    async def _update(self, event: SessionUpdateEvent) -> None:
        config = self._config
        config.kind = "realtime"
        if config.update(event.session):
            self._audio.detect(config.turn_detection, config.noise_reduction is not None)
        self._audio.decode_as(config.input_format)
        await self.emit({"type": "session.updated", "session": config.describe()})

    async def _update_transcription(self, event: TranscriptionSessionUpdateEvent) -> None:
        """A transcription session: committed audio is transcribed (`...transcription.delta` and
        `.completed`), and nothing answered."""
        config = self._config
        if config.update_transcription(event.session):
            self._audio.detect(config.turn_detection, config.noise_reduction is not None)
        self._audio.decode_as(config.input_format)
        await self.emit({"type": "transcription_session.updated", "session": config.describe_transcription()})

    async def _create_item(self, event: CreateItemEvent) -> None:
        item, audio = item_of(event.item)
        self._conversation.check_new(event.item.id)
        previous = self._conversation.add(item, after=event.previous_item_id)
        await self.emit(created_event(item, previous))
        for index, pcm in audio:
            assert isinstance(item, Message)  # only messages carry audio
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
        if self._config.kind == "transcription":
            raise EventError(
                "A transcription session gives no responses.", code="invalid_value", param="type"
            )
        plan = self._config.plan(options, self._conversation.items)
        if plan.in_band and (running := self._running()) is not None:
            raise EventError(
                f"Conversation already has an active response in progress: {running.id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        response = Response(self, plan, self._limits)
        if plan.in_band:
            self._response = response
        else:  # out of band: beside the conversation's own, as OpenAI's
            self._out_of_band = {other for other in self._out_of_band if not other.done} | {response}
        await response.start()

    async def _cancel_response(self, response_id: str | None) -> None:
        running = [r for r in [self._running(), *self._out_of_band] if r is not None and not r.done]
        chosen = [r for r in running if response_id is None or r.id == response_id]
        if not chosen:
            raise EventError(
                "Cancellation failed: no active response found.", code="response_cancel_not_active"
            )
        await chosen[0].cancel()

    @property
    def busy(self) -> bool:
        """A response is being given or audio transcribed: the session is not idle even if the
        client says nothing (the client is waiting for the gateway)."""
        side = any(not response.done for response in self._out_of_band)
        return self._running() is not None or side or self._transcriber.running

    def _running(self) -> Response | None:
        """The response being given, if one is."""
        return self._response if self._response is not None and not self._response.done else None

    # What the input audio's turns need of the session (input_audio.Speaker).
    async def interrupt(self) -> None:
        if (running := self._running()) is not None:
            await running.cancel()
        if self.audio_out is not None:  # what is still queued to play is cut short too
            await self.audio_out.clear()

    async def answer_turn(self) -> None:
        if self._running() is None and self._config.kind == "realtime":
            await self._create_response(ResponseOptions())

    # What a response needs of the session.
    async def wait_for_transcripts(self) -> None:
        await self._transcriber.wait()

    def messages(self, instructions: str) -> list[dict[str, Any]]:
        return self._conversation.messages(instructions)

    def remember(self, item: Entry) -> None:
        """A response's answer joins the conversation."""
        self._conversation.remember(item)

    async def rate_limits(self, headers: Mapping[str, str]) -> None:
        """A response's reservation is made: `rate_limits.updated` shows the key's limits."""
        await self.emit(rate_limits_event(headers))

    @property
    def conversation_id(self) -> str:
        return self._conversation.id

    def last_item_id(self) -> str | None:
        items = self._conversation.items
        return items[-1].id if items else None

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
