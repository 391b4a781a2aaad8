"""The client events of OpenAI's Realtime API that /v1/realtime understands (a practical subset).

Names follow the Realtime API as OpenAI's SDKs send them (`session.update`,
`input_audio_buffer.append`, `conversation.item.create`, `response.create`, `response.cancel`,
...). Unknown keys inside a known event are ignored, as OpenAI's server ignores what it does not
use; an unknown event type is an `error` event, never a closed socket.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from gateway.protocol.common import InvalidParam
from gateway.protocol.validation import parse_object
from gateway.protocol.voices import VOICE_PREFIX

RealtimeModality = Literal["text", "audio"]
# pcm16 at 24 kHz, or G.711 mu-law / a-law at 8 kHz (beta names; GA's `audio/pcmu`, `audio/pcma`).
AudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
# "auto", "none", "required", or one function: GA `{"type": "function", "name": ...}`, beta the name.
ToolChoice = str | dict[str, Any]


def _voice_id(value: Any) -> Any:
    """A custom voice as OpenAI's GA sessions name it (`{"id": "voice_..."}`), kept as its id: the
    session speaks through /v1/audio/speech, which takes the id as a voice name."""
    if isinstance(value, dict) and set(value) == {"id"} and isinstance(value["id"], str):
        return value["id"]
    return value


def voice_param(voice: str) -> str | dict[str, str]:
    """A session's voice as OpenAI echoes it: a custom voice's id as `{"id": ...}`, a name as is."""
    return {"id": voice} if voice.startswith(VOICE_PREFIX) else voice


# A voice name, or a custom voice's `{"id": ...}`.
# The length is the string's own constraint, applied before the id is unwrapped around it, so a long
# name is `string_above_max_length` as any other string field reports it.
VoiceName = Annotated[str, StringConstraints(min_length=1, max_length=64), BeforeValidator(_voice_id)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SessionUpdate(_Lenient):
    """What `session.update` may set; a field left out keeps its value."""

    modalities: list[RealtimeModality] | None = Field(None, min_length=1)
    instructions: str | None = None
    voice: VoiceName | None = None
    input_audio_format: AudioFormat | None = None
    output_audio_format: AudioFormat | None = None
    input_audio_transcription: dict[str, Any] | None = None
    turn_detection: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_response_output_tokens: int | Literal["inf"] | None = None
    speed: float | None = Field(None, ge=0.25, le=4.0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    input_audio_noise_reduction: dict[str, Any] | None = None


class TranscriptionSessionUpdate(_Lenient):
    """What beta's `transcription_session.update` (and GA's `session.type: "transcription"`) sets."""

    input_audio_format: AudioFormat | None = None
    input_audio_transcription: dict[str, Any] | None = None
    turn_detection: dict[str, Any] | None = None
    input_audio_noise_reduction: dict[str, Any] | None = None


class ContentPart(_Lenient):
    type: Literal["input_text", "input_audio", "text", "audio"]
    text: str | None = None
    audio: str | None = Field(None, description="Base64 pcm16, 24 kHz mono (input_audio).")
    transcript: str | None = None


class Item(_Lenient):
    """A conversation item: a `message` (role and content), a `function_call` the model made
    (`call_id`, `name`, `arguments`) or a `function_call_output` (`call_id`, `output`); what each
    type requires is checked in gateway/realtime/items.py, with the param named."""

    id: str | None = Field(None, max_length=64)
    type: Literal["message", "function_call", "function_call_output", "item_reference"] = "message"
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentPart] | None = Field(None, min_length=1)
    call_id: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=64)
    arguments: str | None = None
    output: str | None = None


class ResponseOptions(_Lenient):
    modalities: list[RealtimeModality] | None = Field(None, min_length=1)
    instructions: str | None = None
    voice: VoiceName | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_output_tokens: int | Literal["inf"] | None = None
    max_response_output_tokens: int | Literal["inf"] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    # "auto" (the default conversation) or "none" (out of band: nothing added to it).
    conversation: str | None = None
    input: list[Item] | None = None  # the response's own context instead of the conversation
    metadata: dict[str, str] | None = Field(None, max_length=16)
    output_audio_format: AudioFormat | None = None


class _Event(_Lenient):
    event_id: str | None = Field(None, max_length=512)


class SessionUpdateEvent(_Event):
    type: Literal["session.update"]
    session: SessionUpdate


class TranscriptionSessionUpdateEvent(_Event):
    type: Literal["transcription_session.update"]
    session: TranscriptionSessionUpdate


class AppendAudioEvent(_Event):
    type: Literal["input_audio_buffer.append"]
    audio: str


class CommitAudioEvent(_Event):
    type: Literal["input_audio_buffer.commit"]


class ClearAudioEvent(_Event):
    type: Literal["input_audio_buffer.clear"]


class CreateItemEvent(_Event):
    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: Item


class DeleteItemEvent(_Event):
    type: Literal["conversation.item.delete"]
    item_id: str


class TruncateItemEvent(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class RetrieveItemEvent(_Event):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class CreateResponseEvent(_Event):
    type: Literal["response.create"]
    response: ResponseOptions = Field(default_factory=ResponseOptions)


class CancelResponseEvent(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = Annotated[
    SessionUpdateEvent
    | TranscriptionSessionUpdateEvent
    | AppendAudioEvent
    | CommitAudioEvent
    | ClearAudioEvent
    | CreateItemEvent
    | DeleteItemEvent
    | TruncateItemEvent
    | RetrieveItemEvent
    | CreateResponseEvent
    | CancelResponseEvent,
    Field(discriminator="type"),
]


class _Envelope(BaseModel):
    event: ClientEvent


CLIENT_EVENT_TYPES = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.truncate",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)


def parse_client_event(payload: Any) -> ClientEvent:
    """One client event, or InvalidParam naming what is wrong with it (`param` as OpenAI writes it)."""
    if not isinstance(payload, dict):
        raise InvalidParam(None, "A client event must be a JSON object.", "invalid_type")
    if payload.get("type") not in CLIENT_EVENT_TYPES:
        raise InvalidParam(
            "type",
            f"Invalid value: {payload.get('type')!r}. "
            f"Supported event types are: {', '.join(CLIENT_EVENT_TYPES)}.",
        )
    try:
        envelope = parse_object(_Envelope, {"event": payload}, "")
    except InvalidParam as exc:
        param = exc.param.removeprefix("event.") if exc.param and exc.param != "event" else None
        raise InvalidParam(param or None, exc.message.replace("'event.", "'"), exc.code) from None
    return envelope.event
