"""Pieces shared by the chat and completion request schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds from OpenAI's API reference; vLLM accepts the same ranges.
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
ChoiceCount = Annotated[int, Field(ge=1, le=128)]
TokenCount = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
LogitBias = dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]]
Stop = str | list[str] | None
# Stop sequences OpenAI accepts, and vLLM too (its VLLM_MAX_STOP_STRINGS defaults to 4).
MAX_STOP = 4


class InvalidParam(ValueError):
    """A request that parses but breaks one of OpenAI's rules; `param` names the offending field."""

    def __init__(self, param: str | None, message: str, code: str | None = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


class Strict(BaseModel):
    """A nested object of OpenAI's schema: unknown keys are a client mistake worth reporting."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A nested object that OpenAI keeps extending: accept and forward unknown keys."""

    model_config = ConfigDict(extra="allow")


class StreamOptions(Open):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None
    # vLLM's extra: usage on every chunk, not just the last.
    continuous_usage_stats: bool | None = None


class JsonSchemaFormat(Open):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    # "schema" shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(Strict):
    type: Literal["text"]


class JsonObjectFormat(Strict):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


# vLLM also knows {"type": "structural_tag", ...}; it is forwarded as an open object.
class StructuralTagFormat(Open):
    type: Literal["structural_tag"]


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponseFormat | StructuralTagFormat,
    Field(discriminator="type"),
]


class SamplingParams(Open):
    """Parameters both /v1/chat/completions and /v1/completions take.

    Unknown top-level keys are kept (extra="allow") and forwarded: vLLM's own
    extras (top_k, min_p, repetition_penalty, ignore_eos, ...) and future OpenAI
    fields reach the engine untouched; the engine reports what it cannot honour.
    """

    model: str | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    max_tokens: TokenCount | None = None
    n: ChoiceCount | None = None
    seed: Seed | None = None
    stop: Stop = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: str | None = None
    # vLLM's most used extras, typed so bad values are caught at the gateway.
    top_k: Annotated[int, Field(ge=-1)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0)] | None = None
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    ignore_eos: bool | None = None

    def check(self) -> None:
        """Rules that span fields, reported with the param OpenAI would name."""
        check_stream_options(self)
        check_stop(self.stop)


def check_stop(stop: Stop) -> None:
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        raise InvalidParam(
            "stop",
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(stop)} instead.",
            "array_above_max_length",
        )


def check_stream_options(request: SamplingParams) -> None:
    if request.stream_options is not None and not request.stream:
        raise InvalidParam("stream_options", "`stream_options` is only allowed when `stream` is true.")
