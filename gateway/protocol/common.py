"""Pieces shared by the chat and completion request schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds from OpenAI's API reference; vLLM accepts the same ranges.
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
# OpenAI stops at 128; vLLM has no upper bound (its scheduler runs them), so neither does the gateway.
ChoiceCount = Annotated[int, Field(ge=1)]
TokenCount = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# OpenAI refuses biases outside [-100, 100]; vLLM clamps them into that range, so they pass here.
LogitBias = dict[str, float]
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
    # OpenAI limits the name to `^[A-Za-z0-9_-]{1,64}$`; vLLM takes any string (spaces, dots),
    # and so does the gateway.
    name: str
    description: str | None = None
    # "schema" shadows a BaseModel attribute, hence the alias.
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


# vLLM accepts (and ignores) extra keys inside `response_format`, so these are open too.
class TextFormat(Open):
    type: Literal["text"]


class JsonObjectFormat(Open):
    type: Literal["json_object"]


class JsonSchemaResponseFormat(Open):
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
    service_tier: str | None = None
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
        check_passive_fields(self)


def check_stop(stop: Stop) -> None:
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        raise InvalidParam(
            "stop",
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(stop)} instead.",
            "array_above_max_length",
        )


def check_stream_options(request: SamplingParams) -> None:
    options = request.stream_options
    # vLLM refuses only a non-empty `stream_options` without `stream` (an empty object passes).
    if options is not None and (options.model_fields_set or options.model_extra) and not request.stream:
        raise InvalidParam("stream_options", "`stream_options` is only allowed when `stream` is true.")


# Fields OpenAI serves and vLLM 0.32 takes but ignores: forwarding them would answer as if they
# had worked, so the gateway says so instead (docs/architecture.md, "Fields that do nothing").
SERVED_TIERS = ("auto", "default")
_IGNORED = {
    "prediction": "Predicted outputs (`prediction`) are not supported by this gateway's engines; "
    "remove the field.",
    "web_search_options": "Web search (`web_search_options`) is not available on this gateway; "
    "remove the field.",
}


def check_passive_fields(request: SamplingParams) -> None:
    extras = request.model_extra or {}
    for field, message in _IGNORED.items():
        if extras.get(field) is not None:
            raise InvalidParam(field, message)
    tier = request.service_tier
    if tier is not None and tier not in SERVED_TIERS:
        raise InvalidParam(
            "service_tier",
            f"Invalid value for 'service_tier': {tier[:40]!r}. This gateway serves every request in "
            f"one tier; supported values are: {list(SERVED_TIERS)}.",
        )
