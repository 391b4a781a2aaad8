"""Anthropic's Messages API: the request of POST /v1/messages and /v1/messages/count_tokens, as
Anthropic validates it, and Anthropic's error envelope.

The gateway relays these requests to vLLM's own implementation (vllm/entrypoints/anthropic), so the
schema here only catches client mistakes early, with Anthropic's rules: `model`, `max_tokens` and
`messages` required (at least one); roles `user`, `assistant` and `system` (Anthropic's SDK 2.x and
vLLM take system messages in the list too); content a string or a list of typed blocks; `system` a
string or text blocks; `temperature` and `top_p` within 0..1. Unknown top-level keys are kept and
forwarded (vLLM's extras: `chat_template_kwargs`, `cache_salt`, ...), as on the OpenAI routes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.protocol.common import InvalidParam, Open

# Anthropic's bounds (its API reference); vLLM takes the same.
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
# Anthropic's minimum thinking budget; vLLM enforces it too.
MIN_THINKING_BUDGET = 1024


class AnthropicTextBlock(Open):
    type: Literal["text"]
    text: str


class AnthropicImageBlock(Open):
    type: Literal["image"]
    source: dict[str, Any]


class AnthropicDocumentBlock(Open):
    type: Literal["document"]
    source: dict[str, Any]


class AnthropicToolUseBlock(Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class AnthropicToolResultBlock(Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = None


class AnthropicThinkingBlock(Open):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class AnthropicRedactedThinkingBlock(Open):
    type: Literal["redacted_thinking"]
    data: str


class AnthropicOtherBlock(Open):
    """Block types whose shape the engine judges itself: vLLM's tool list changes, and Anthropic's
    server-tool, search-result and container blocks (vLLM refuses those it does not know)."""

    type: Literal[
        "tool_reference",
        "tool_addition",
        "tool_removal",
        "search_result",
        "server_tool_use",
        "container_upload",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "tool_search_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
    ]


AnthropicContentBlock = Annotated[
    AnthropicTextBlock
    | AnthropicImageBlock
    | AnthropicDocumentBlock
    | AnthropicToolUseBlock
    | AnthropicToolResultBlock
    | AnthropicThinkingBlock
    | AnthropicRedactedThinkingBlock
    | AnthropicOtherBlock,
    Field(discriminator="type"),
]


class AnthropicMessage(Open):
    role: Literal["user", "assistant", "system"]
    content: str | list[AnthropicContentBlock]


class AnthropicTool(Open):
    """A client tool (`input_schema` required), or one of Anthropic's server tools (`type` set,
    e.g. `web_search_20250305`), which the engine judges."""

    name: Annotated[str, Field(min_length=1)]
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class AnthropicToolChoiceAuto(Open):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class AnthropicToolChoiceAny(Open):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class AnthropicToolChoiceTool(Open):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class AnthropicToolChoiceNone(Open):
    type: Literal["none"]


AnthropicToolChoice = Annotated[
    AnthropicToolChoiceAuto | AnthropicToolChoiceAny | AnthropicToolChoiceTool | AnthropicToolChoiceNone,
    Field(discriminator="type"),
]


class AnthropicThinkingEnabled(Open):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=MIN_THINKING_BUDGET)]


class AnthropicThinkingDisabled(Open):
    type: Literal["disabled"]


class AnthropicThinkingAdaptive(Open):
    type: Literal["adaptive"]


AnthropicThinking = Annotated[
    AnthropicThinkingEnabled | AnthropicThinkingDisabled | AnthropicThinkingAdaptive,
    Field(discriminator="type"),
]


class AnthropicMetadata(Open):
    user_id: str | None = None


class AnthropicCountTokensRequest(Open):
    """POST /v1/messages/count_tokens: a Messages request without `max_tokens`."""

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[AnthropicMessage], Field(min_length=1)]
    system: str | list[AnthropicTextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: AnthropicThinking | None = None

    def check(self) -> None:
        """Rules that span fields (parse_request calls it after validation)."""
        for index, tool in enumerate(self.tools or []):
            if tool.type in (None, "custom") and tool.input_schema is None:
                raise InvalidParam(
                    f"tools[{index}].input_schema",
                    f"Missing required parameter: 'tools[{index}].input_schema'.",
                    "missing_required_parameter",
                )


class AnthropicMessagesRequest(AnthropicCountTokensRequest):
    """POST /v1/messages."""

    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: Unit | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: AnthropicMetadata | None = None

    def check(self) -> None:
        super().check()
        thinking = self.thinking
        if isinstance(thinking, AnthropicThinkingEnabled) and thinking.budget_tokens >= self.max_tokens:
            raise InvalidParam(
                "thinking.budget_tokens",
                "`max_tokens` must be greater than `thinking.budget_tokens`.",
            )


class AnthropicError(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Every error of the Messages routes: `{"type": "error", "error": {"type", "message"}}`."""

    model_config = ConfigDict(title="AnthropicErrorResponse")

    type: Literal["error"] = "error"
    error: AnthropicError


# The gateway's statuses and the error type Anthropic gives each (its "Errors" reference); any
# other 4xx is an invalid request, any other 5xx an `api_error`.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error `type` for an HTTP status."""
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return AnthropicErrorResponse(error=AnthropicError(type=error_type(status), message=message)).model_dump()
