"""A realtime session's conversation: typed items, their order, and what the model is told of them.

Items are `message`s, `function_call`s and `function_call_output`s (tools.py). A message's
content parts are text (`input_text`, assistant `text`), input audio (its transcript, `None` while
the transcription runs) and spoken output (`audio`: its transcript, and the audio each of its
sentences was spoken with, which `conversation.item.truncate` cuts to what the user heard).
`describe()` is each one's wire shape, a fresh dict each time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.protocol.realtime import Item
from gateway.realtime import pcm
from gateway.realtime.events import EventError, new_id
from gateway.realtime.tools import FunctionCall, FunctionCallOutput

Role = Literal["user", "assistant", "system"]
Status = Literal["completed", "incomplete", "in_progress"]


@dataclass
class Spoken:
    """One sentence of a spoken answer, and how many pcm bytes of its audio were sent."""

    text: str
    pcm_bytes: int = 0


@dataclass
class TextPart:
    type: Literal["input_text", "text"]
    text: str

    def said(self) -> str:
        return self.text

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text}


@dataclass
class InputAudioPart:
    transcript: str | None = None  # None until the audio's transcription ends
    type: Literal["input_audio"] = "input_audio"

    def said(self) -> str:
        return self.transcript or ""

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "transcript": self.transcript}


@dataclass
class AudioPart:
    transcript: str = ""
    spoken: list[Spoken] = field(default_factory=list)  # as sent, for truncate; not on the wire
    type: Literal["audio"] = "audio"

    def said(self) -> str:
        return self.transcript

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "transcript": self.transcript}


Part = TextPart | InputAudioPart | AudioPart


@dataclass
class Message:
    id: str
    role: Role
    content: list[Part]
    status: Status = "completed"

    def text(self) -> str:
        return "".join(part.said() for part in self.content)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "message",
            "status": self.status,
            "role": self.role,
            "content": [part.describe() for part in self.content],
        }


Entry = Message | FunctionCall | FunctionCallOutput


def created_event(item: Entry, previous_id: str | None) -> dict[str, Any]:
    return {"type": "conversation.item.created", "previous_item_id": previous_id, "item": item.describe()}


def item_of(given: Item, param: str = "item") -> tuple[Entry, list[tuple[int, bytes]]]:
    """A client's item, and the audio of its parts to transcribe (by index)."""
    if given.type == "function_call":
        if not given.name:
            raise EventError(
                "A function_call needs `name`.", code="missing_required_parameter", param=f"{param}.name"
            )
        return FunctionCall(
            given.id or new_id("item"), given.call_id or new_id("call"), given.name, given.arguments or ""
        ), []
    if given.type == "function_call_output":
        if given.call_id is None or given.output is None:
            missing = "call_id" if given.call_id is None else "output"
            raise EventError(
                f"A function_call_output needs `{missing}`.",
                code="missing_required_parameter",
                param=f"{param}.{missing}",
            )
        return FunctionCallOutput(given.id or new_id("item"), given.call_id, given.output), []
    if given.type != "message":
        raise EventError(
            f"Invalid item type {given.type!r} here.", code="invalid_value", param=f"{param}.type"
        )
    return message_of(given, param)


def message_of(given: Item, param: str = "item") -> tuple[Message, list[tuple[int, bytes]]]:
    """A `message` item, and the audio of its parts to transcribe (by index)."""
    if given.role is None or not given.content:
        missing = "role" if given.role is None else "content"
        raise EventError(
            f"A message needs `{missing}`.", code="missing_required_parameter", param=f"{param}.{missing}"
        )
    if given.role != "user" and any(
        p.type.startswith("input_") and p.type != "input_text" for p in given.content
    ):
        raise EventError(
            "Only user messages may carry input audio.", code="invalid_value", param=f"{param}.content"
        )
    content: list[Part] = []
    audio: list[tuple[int, bytes]] = []
    for index, part in enumerate(given.content):
        if part.type == "input_text" or part.type == "text":
            if part.text is None:
                raise EventError(
                    "A text part needs `text`.",
                    code="missing_required_parameter",
                    param=f"{param}.content[{index}].text",
                )
            content.append(TextPart(part.type, part.text))
        elif part.type == "input_audio":
            if part.audio is None:
                if part.transcript is None:
                    raise EventError(
                        "An input_audio part needs `audio` (base64 pcm16, 24 kHz mono).",
                        code="missing_required_parameter",
                        param=f"{param}.content[{index}].audio",
                    )
                content.append(InputAudioPart(part.transcript))
            else:
                audio.append((index, pcm.decode(part.audio, f"{param}.content[{index}].audio")))
                content.append(InputAudioPart())
        else:
            content.append(AudioPart(part.transcript or part.text or ""))
    return Message(given.id or new_id("item"), given.role, content), audio


class Conversation:
    """The items in order; at most `max_items` of them added by the client or its audio."""

    def __init__(self, max_items: int) -> None:
        self.id = new_id("conv")
        self._max_items = max_items
        self._items: list[Entry] = []

    @property
    def items(self) -> list[Entry]:
        return list(self._items)

    def get(self, item_id: str) -> Entry:
        for item in self._items:
            if item.id == item_id:
                return item
        raise EventError(f"Item with item_id not found: {item_id}", code="item_not_found", param="item_id")

    def check_new(self, item_id: str | None) -> None:
        """A client's own item id must not be taken."""
        if item_id is not None and any(existing.id == item_id for existing in self._items):
            raise EventError(
                f"An item with id `{item_id}` already exists.", code="item_already_exists", param="item.id"
            )

    def add(self, item: Entry, *, after: str | None = None) -> str | None:
        """Adds `item` last, first (`after="root"`) or after the item `after`; returns the id of the
        item now before it."""
        if len(self._items) >= self._max_items:
            raise EventError(
                f"The conversation holds {self._max_items} items, the most allowed; delete some first.",
                code="conversation_full",
            )
        if after is None:
            self._items.append(item)
        elif after == "root":
            self._items.insert(0, item)
        else:
            positions = [i for i, existing in enumerate(self._items) if existing.id == after]
            if not positions:
                raise EventError(
                    f"Item with item_id not found: {after}", code="item_not_found", param="previous_item_id"
                )
            self._items.insert(positions[0] + 1, item)
        index = self._items.index(item)
        return self._items[index - 1].id if index > 0 else None

    def remember(self, item: Entry) -> None:
        """A response's answer, appended (the item cap is the client's, not the model's)."""
        self._items.append(item)

    def delete(self, item_id: str) -> None:
        self._items.remove(self.get(item_id))

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        """The user heard only `audio_end_ms` of an assistant's spoken answer (they interrupted
        it): its transcript keeps what was heard, so the model is not told it said the rest."""
        item = self.get(item_id)
        if not isinstance(item, Message) or item.role != "assistant" or content_index >= len(item.content):
            raise EventError(
                "Only an assistant item's audio can be truncated.", code="invalid_value", param="item_id"
            )
        part = item.content[content_index]
        if not isinstance(part, AudioPart):
            raise EventError("The content part is not audio.", code="invalid_value", param="content_index")
        length_ms = pcm.ms_of(sum(segment.pcm_bytes for segment in part.spoken))
        if audio_end_ms > length_ms:
            raise EventError(
                f"Audio content of {length_ms}ms is already shorter than {audio_end_ms}ms",
                code="invalid_value",
                param="audio_end_ms",
            )
        part.spoken = _heard(part.spoken, pcm.bytes_of(audio_end_ms))
        part.transcript = " ".join(segment.text for segment in part.spoken if segment.text)

    def messages(self, instructions: str) -> list[dict[str, Any]]:
        return chat_messages(self._items, instructions)


def chat_messages(items: list[Entry], instructions: str) -> list[dict[str, Any]]:
    """Items as chat messages, `instructions` as the system message: a function call joins the
    assistant message before it (or opens one) as a `tool_calls` entry, an output is a `tool`
    message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        if isinstance(item, FunctionCall):
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": None}
                messages.append(last)
            last.setdefault("tool_calls", []).append(item.chat_call())
        elif isinstance(item, FunctionCallOutput):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
        elif text := item.text():
            messages.append({"role": item.role, "content": text})
    return messages


def _heard(spoken: list[Spoken], pcm_bytes: int) -> list[Spoken]:
    """The sentences within the first `pcm_bytes` of audio; the one cut mid-way keeps the words
    its heard share of the audio covers (by characters, to the last whole word)."""
    heard: list[Spoken] = []
    left = pcm_bytes
    for segment in spoken:
        if left <= 0:
            break
        if segment.pcm_bytes <= left:
            heard.append(segment)
            left -= segment.pcm_bytes
            continue
        cut = segment.text[: len(segment.text) * left // segment.pcm_bytes]
        words = cut.rsplit(" ", 1)[0] if " " in cut else ""
        heard.append(Spoken(words.rstrip(), left))
        break
    return heard
