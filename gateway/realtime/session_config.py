"""A realtime session's settings: what `session.update` (or `transcription_session.update`) sets,
their wire description, and the `Plan` of one `response.create` (its options over the session's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.protocol.realtime import ResponseOptions, SessionUpdate, TranscriptionSessionUpdate, voice_param
from gateway.realtime import g711
from gateway.realtime.conversation import Entry, item_of
from gateway.realtime.events import EventError
from gateway.realtime.response import Plan
from gateway.realtime.tools import beta_choice, choice_of, tools_of
from gateway.realtime.vad import VadSettings


@dataclass
class SessionConfig:
    """What `session.update` sets; `describe()` is the `session` of `session.created`/`.updated`."""

    id: str
    model: str
    kind: Literal["realtime", "transcription"] = "realtime"
    modalities: list[str] = field(default_factory=lambda: ["text", "audio"])
    instructions: str = ""
    voice: str = "alloy"
    speed: float = 1.0
    temperature: float | None = None
    max_output_tokens: int | None = None
    transcription: dict[str, Any] | None = None
    # Server VAD by default, as OpenAI's (`turn_detection: null` to commit yourself).
    turn_detection: VadSettings | None = field(default_factory=VadSettings)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    input_format: g711.Format = "pcm16"
    output_format: g711.Format = "pcm16"
    # `input_audio_noise_reduction`: {"type": "near_field" | "far_field"} or None (off, OpenAI's default).
    noise_reduction: dict[str, str] | None = None

    def describe(self) -> dict[str, Any]:
        if self.kind == "transcription":
            return self.describe_transcription()
        return {
            "id": self.id,
            "object": "realtime.session",
            "model": self.model,
            "modalities": self.modalities,
            "instructions": self.instructions,
            "voice": voice_param(self.voice),
            "speed": self.speed,
            "input_audio_format": self.input_format,
            "output_audio_format": self.output_format,
            "input_audio_transcription": self.transcription,
            "turn_detection": self.turn_detection.describe() if self.turn_detection else None,
            "input_audio_noise_reduction": self.noise_reduction,
            "tools": self.tools,
            "tool_choice": beta_choice(self.tool_choice),
            "temperature": self.temperature,
            "max_response_output_tokens": self.max_output_tokens if self.max_output_tokens else "inf",
        }

    def describe_transcription(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.transcription_session",
            "input_audio_format": self.input_format,
            "input_audio_transcription": self.transcription,
            "turn_detection": self.turn_detection.describe() if self.turn_detection else None,
            "input_audio_noise_reduction": self.noise_reduction,
            "modalities": ["text"],
        }

    def update(self, update: SessionUpdate) -> bool:
        """Applies `session.update` (every value checked first); True when turn detection or noise
        reduction changed (the input's detector starts afresh)."""
        given = update.model_fields_set
        vad = VadSettings.parse(update.turn_detection) if update.turn_detection is not None else None
        noise = _noise_reduction(update.input_audio_noise_reduction, given, self.noise_reduction)
        tools = tools_of(update.tools, "session.tools") if update.tools is not None else self.tools
        choice = self.tool_choice if update.tool_choice is None else update.tool_choice
        choice = choice_of(choice, tools, "session.tool_choice")
        modalities = _modalities(update.modalities, "session.modalities") if update.modalities else None
        cap = _token_cap(update.max_response_output_tokens) if "max_response_output_tokens" in given else None
        self.tools, self.tool_choice = tools, choice
        self.modalities = modalities or self.modalities
        self.instructions = self.instructions if update.instructions is None else update.instructions
        self.voice = update.voice or self.voice
        self.speed = self.speed if update.speed is None else update.speed
        self.input_format = update.input_audio_format or self.input_format
        self.output_format = update.output_audio_format or self.output_format
        if "temperature" in given:
            self.temperature = update.temperature
        if "max_response_output_tokens" in given:
            self.max_output_tokens = cap
        if "input_audio_transcription" in given:
            self.transcription = update.input_audio_transcription
        return self._reduce(noise) | ("turn_detection" in given and self._detect(vad))

    def update_transcription(self, update: TranscriptionSessionUpdate) -> bool:
        """Applies `transcription_session.update`: the session transcribes, and answers nothing."""
        given = update.model_fields_set
        vad = VadSettings.parse(update.turn_detection) if update.turn_detection is not None else None
        noise = _noise_reduction(update.input_audio_noise_reduction, given, self.noise_reduction)
        self.kind = "transcription"
        self.input_format = update.input_audio_format or self.input_format
        if "input_audio_transcription" in given:
            self.transcription = update.input_audio_transcription
        return self._reduce(noise) | ("turn_detection" in given and self._detect(vad))

    def _reduce(self, noise: dict[str, str] | None) -> bool:
        changed = noise != self.noise_reduction
        self.noise_reduction = noise
        return changed

    def _detect(self, vad: VadSettings | None) -> bool:
        changed = vad != self.turn_detection
        self.turn_detection = vad
        return changed

    def plan(self, options: ResponseOptions, items: Sequence[Entry]) -> Plan:
        """One response's plan: its options over the session's; `items` are the session's, which
        `input`'s `item_reference`s name."""
        given = options.model_fields_set
        modalities = (
            _modalities(options.modalities, "response.modalities") if options.modalities else self.modalities
        )
        cap = (
            options.max_output_tokens if "max_output_tokens" in given else options.max_response_output_tokens
        )
        tools = tools_of(options.tools, "response.tools") if options.tools is not None else self.tools
        choice = options.tool_choice if options.tool_choice is not None else self.tool_choice
        if options.conversation not in (None, "auto", "none"):
            raise EventError(
                "`conversation` is `auto` or `none`: a session has one conversation.",
                code="invalid_value",
                param="response.conversation",
            )
        return Plan(
            modalities=modalities,
            instructions=options.instructions if options.instructions is not None else self.instructions,
            voice=options.voice or self.voice,
            speed=self.speed,
            temperature=options.temperature if options.temperature is not None else self.temperature,
            max_tokens=_token_cap(cap)
            if {"max_output_tokens", "max_response_output_tokens"} & given
            else self.max_output_tokens,
            tools=tools,
            tool_choice=choice_of(choice, tools, "response.tool_choice"),
            in_band=options.conversation != "none",
            input=_input(options, items),
            metadata=options.metadata,
            output_format=options.output_audio_format or self.output_format,
            language=self._language(),
        )

    def _language(self) -> str | None:
        language = (self.transcription or {}).get("language")
        return language if isinstance(language, str) and language else None


def _input(options: ResponseOptions, items: Sequence[Entry]) -> list[Entry] | None:
    """`response.input`: the response's own context (items, or references to the session's)."""
    if options.input is None:
        return None
    context: list[Entry] = []
    for index, given in enumerate(options.input):
        param = f"response.input[{index}]"
        if given.type == "item_reference":
            found = [item for item in items if item.id == given.id]
            if not found:
                raise EventError(
                    f"Item with item_id not found: {given.id}", code="item_not_found", param=f"{param}.id"
                )
            context.append(found[0])
            continue
        item, audio = item_of(given, param)
        if audio:
            raise EventError(
                "An out-of-band response's input takes text (or an input_audio `transcript`), not audio.",
                code="invalid_value",
                param=f"{param}.content",
            )
        context.append(item)
    return context


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


_NOISE_KINDS = ("near_field", "far_field")


def _noise_reduction(
    value: dict[str, Any] | None, given: set[str], current: dict[str, str] | None
) -> dict[str, str] | None:
    """The session's noise reduction after an update: unchanged when not given, None to turn it off.
    Both of OpenAI's kinds run the same spectral gate here (adapters/stt/noise.py)."""
    if "input_audio_noise_reduction" not in given:
        return current
    if value is None:
        return None
    kind = value.get("type")
    if kind not in _NOISE_KINDS:
        raise EventError(
            f"Invalid noise reduction type {kind!r}: expected one of {list(_NOISE_KINDS)} or null.",
            code="invalid_value",
            param="session.input_audio_noise_reduction.type",
        )
    return {"type": kind}
