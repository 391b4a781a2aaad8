"""The /v1/chat/completions request, as OpenAI documents it, plus vLLM's extras."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from gateway.protocol.common import (
    InvalidParam,
    Open,
    ResponseFormat,
    SamplingParams,
    Strict,
    TokenCount,
)
from gateway.protocol.speech import VoiceId
from gateway.protocol.stored import check_metadata
from gateway.protocol.validation import parse_field


class TextPart(Open):
    type: Literal["text"]
    text: str


class ImageUrl(Open):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Open):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(Open):
    data: str
    format: str


class AudioPart(Open):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(Open):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(Open):
    type: Literal["refusal"]
    refusal: str


class OtherPart(Open):
    """Part types OpenAI or vLLM add later (video_url, audio_url, ...): forwarded as they are.

    vLLM also reads a part without `type` by the field it carries (`{"image_url": ...}`), so
    `type` may be absent here; the media screen (adapters/parts.py) still judges any media field.
    """

    type: str | None = None


def _part_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    # A `type` that is not a string (a list, an object) is no known part; it must not crash the lookup.
    return kind if isinstance(kind, str) and kind in _KNOWN_PARTS else "other"


_KNOWN_PARTS = {"text", "image_url", "input_audio", "file", "refusal"}

# A callable discriminator: a bad part reports the errors of its own type only,
# while part types this schema does not know yet still pass through.
ContentPart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImagePart, Tag("image_url")]
    | Annotated[AudioPart, Tag("input_audio")]
    | Annotated[FilePart, Tag("file")]
    | Annotated[RefusalPart, Tag("refusal")]
    | Annotated[OtherPart, Tag("other")],
    Discriminator(_part_tag),
]
Content = str | list[ContentPart]


class FunctionCall(Open):
    name: str
    arguments: str


class ToolCall(Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(Open):
    role: Literal["system"]
    content: Content | None = None  # vLLM renders a system message without content
    name: str | None = None


class DeveloperMessage(Open):
    role: Literal["developer"]
    content: Content | None = None  # OpenAI requires it; vLLM renders the message without
    name: str | None = None


class UserMessage(Open):
    role: Literal["user"]
    content: Content | None = None  # OpenAI requires it; vLLM renders the message without
    name: str | None = None


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: Content | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(Open):
    role: Literal["tool"]
    content: Content | None = None  # OpenAI requires it; vLLM renders the message without
    # OpenAI requires it; vLLM does not (a chat template may not use it), so neither does the gateway.
    tool_call_id: str | None = None


class FunctionMessage(Open):
    role: Literal["function"]
    content: str | None
    name: str


class RoleRequired(Open):
    role: str  # absent: pydantic reports `messages[i].role` missing


class CustomRoleMessage(Open):
    """A role OpenAI does not know (`critic`, ...): vLLM passes it to the chat template, and so does
    the gateway (the template decides)."""

    role: str
    content: Content | None = None


_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _role_tag(value: Any) -> str:
    role = value.get("role") if isinstance(value, dict) else getattr(value, "role", None)
    if role is None or not isinstance(role, str):
        return "missing"  # no role: a 400 naming `role`, as before
    return role if role in _ROLES else "custom"


Message = Annotated[
    Annotated[SystemMessage, Tag("system")]
    | Annotated[DeveloperMessage, Tag("developer")]
    | Annotated[UserMessage, Tag("user")]
    | Annotated[AssistantMessage, Tag("assistant")]
    | Annotated[ToolMessage, Tag("tool")]
    | Annotated[FunctionMessage, Tag("function")]
    | Annotated[CustomRoleMessage, Tag("custom")]
    | Annotated[RoleRequired, Tag("missing")],
    Discriminator(_role_tag),
]


class FunctionDefinition(Open):
    # OpenAI limits names to `^[A-Za-z0-9_-]{1,64}$`; vLLM takes any string, and so does the gateway.
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Open):
    type: Literal["function"] = "function"  # vLLM's default when `type` is left out
    function: FunctionDefinition


class NamedFunction(Open):
    name: str


class NamedToolChoice(Open):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class TantraOptions(Strict):
    """The gateway's own extensions of a chat request (`tantra`: never sent to the engine)."""

    # `tantra_confidence` per choice, from the tokens' log-probabilities (docs/orchestration.md).
    confidence: bool = False


class ChatCompletionRequest(SamplingParams):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: TokenCount | None = None
    logprobs: bool | None = None
    # OpenAI stops at 20; vLLM takes -1 (the whole vocabulary) and any count up to its
    # `--max-logprobs`, which only the engine knows, so the engine judges the upper bound.
    top_logprobs: Annotated[int, Field(ge=-1)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI's deprecated function calling: vLLM 0.32 ignores both keys, whatever they hold.
    functions: Any = None
    function_call: Any = None
    store: bool | None = None
    # vLLM ignores the key, and so does the gateway's schema unless `store` is true: the gateway
    # then keeps it (stored completions), under OpenAI's rules (16 string pairs).
    metadata: Any = None
    # vLLM 0.32's values (OpenAI's and DeepSeek's `max`); anything else vLLM refuses too.
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    # Spoken answers (OpenAI's audio output): with "audio" in `modalities` the gateway speaks the
    # answer itself and `audio` is required; otherwise vLLM ignores both keys, whatever they hold
    # (a string `modalities` included), and so does the gateway.
    modalities: Any = None
    audio: Any = None
    # The gateway's extensions (docs/orchestration.md, "Confidence"); taken out before the engine.
    tantra: TantraOptions | None = None

    def check(self) -> None:
        """Rules that span fields, reported with the param OpenAI would name."""
        if self.top_logprobs and not self.logprobs:
            raise InvalidParam("top_logprobs", "`logprobs` must be true when `top_logprobs` is set.")
        super().check()  # stream_options, stop
        if self.store:
            check_metadata(self.metadata)
        if self.speaks:
            check_audio_output(self)
        if self.tools == []:
            raise InvalidParam(
                "tools", "`tools` must not be an empty array; give at least one tool or omit it."
            )
        if self.tool_choice is not None and self.tool_choice != "none":
            if not self.tools:
                raise InvalidParam("tool_choice", "`tool_choice` needs `tools` to be given.")
            if isinstance(self.tool_choice, NamedToolChoice):
                names = {tool.function.name for tool in self.tools}
                if self.tool_choice.function.name not in names:
                    raise InvalidParam(
                        "tool_choice",
                        f"`tool_choice` names function {self.tool_choice.function.name!r}, "
                        "which is not among `tools`.",
                    )

    @property
    def speaks(self) -> bool:
        """Audio output asked for: "audio" among `modalities`."""
        return isinstance(self.modalities, list) and "audio" in self.modalities

    def audio_output(self) -> ChatAudioParam | None:
        """The validated `audio` of a request that asked for spoken answers (None: text only)."""
        return parse_field(ChatAudioParam, self.audio, "audio") if self.speaks else None


# OpenAI's output formats for chat audio; `pcm16` is raw 16-bit little-endian mono at 24 kHz.
CHAT_AUDIO_FORMATS = ("wav", "aac", "mp3", "flac", "opus", "pcm16")


class ChatAudioParam(Open):
    """OpenAI's `ChatCompletionAudioParam`: the voice and format of a spoken answer."""

    voice: Annotated[str, Field(min_length=1)] | VoiceId
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]
    # Tantra's extension: the answer's language (ISO 639-1), whose voice an OpenAI voice name becomes.
    language: Annotated[str, Field(min_length=2, max_length=35)] | None = None

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


def check_audio_output(request: ChatCompletionRequest) -> None:
    """`audio` is required with audio output, as OpenAI's; one spoken choice per answer."""
    if request.audio is None:
        raise InvalidParam(
            "audio",
            "Missing required parameter: 'audio'. It is required when 'modalities' includes 'audio'.",
            "missing_required_parameter",
        )
    request.audio_output()
    if request.n is not None and request.n > 1:
        raise InvalidParam(
            "n",
            "Audio output (`modalities` with 'audio') supports one choice only; set `n` to 1 or omit it.",
            "unsupported_value",
        )
