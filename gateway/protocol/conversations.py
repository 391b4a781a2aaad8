"""OpenAI's Conversations API on the wire: the create, update and add-items bodies, the items-list
parameters, and `normalize_items`, which checks items as OpenAI does and gives them the shape they
are stored and shown in (and in which the Responses API reads them back as input).

Items are Responses input items. Messages, function calls and function-call outputs are checked
field by field (OpenAI's `param` for the first problem: `items[0].content[1].type`); any other item
type is kept as given, with only `type` required, as OpenAI keeps the many tool-call items it knows.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.protocol.common import InvalidParam, Open, Strict
from gateway.protocol.stored import LIST_MAX, CursorList, check_metadata
from gateway.protocol.validation import parse_field

# OpenAI: "You may add up to 20 items at a time" (on create and on add).
MAX_ITEMS = 20
# The longest item id kept (the store's column).
MAX_ITEM_ID = 160
# OpenAI's `include` values (ResponseIncludable); every item is kept whole, so they change nothing.
INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)
# Ids the gateway gives items that come without one, by type (OpenAI's prefixes).
_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}
Status = Literal["in_progress", "completed", "incomplete"]


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: the prefix and 48 hex digits (`conv_…`, `msg_…`)."""
    return prefix + secrets.token_hex(24)


# Content parts ------------------------------------------------------------------------------------


class InputText(Open):
    type: Literal["input_text"]
    text: str


class InputImage(Open):
    type: Literal["input_image"]
    detail: Literal["low", "high", "auto", "original"] = "auto"
    image_url: str | None = None
    file_id: str | None = None


class InputFile(Open):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


class OutputText(Open):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)


class Refusal(Open):
    type: Literal["refusal"]
    refusal: str


InputPart = Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]
OutputPart = Annotated[OutputText | Refusal, Field(discriminator="type")]


# Items --------------------------------------------------------------------------------------------


class _Item(Open):
    id: Annotated[str, Field(min_length=1, max_length=MAX_ITEM_ID)] | None = None
    status: Status | None = None


class InputMessage(_Item):
    """A message from the user, the system or the developer (`content` a string or input parts)."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer"]
    content: str | list[InputPart]


class OutputMessage(_Item):
    """An assistant message (`content` a string or output_text and refusal parts)."""

    type: Literal["message"] = "message"
    role: Literal["assistant"]
    content: str | list[OutputPart]
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCall(_Item):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class FunctionCallOutput(_Item):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputPart]


class OtherItem(_Item):
    """Any other item type OpenAI knows (reasoning, tool calls of its hosted tools...): kept as given."""

    type: Annotated[str, Field(min_length=1, max_length=64)]


_BY_TYPE: dict[str, type[_Item]] = {"function_call": FunctionCall, "function_call_output": FunctionCallOutput}


def normalize_items(
    raw: Any, param: str = "items", *, max_items: int | None = MAX_ITEMS
) -> list[dict[str, Any]]:
    """`raw` (a list of Responses input items) checked as OpenAI checks them, each as it is stored:
    with an `id` (its own, or a new one), a `type`, a `status` (`completed` unless given), and a
    message's string content as one text part (`input_text`, or `output_text` for the assistant).
    At most `max_items` (OpenAI's 20 for a client's; None for what a response adds)."""
    if not isinstance(raw, list):
        raise InvalidParam(param, f"Invalid type for '{param}': expected an array.", "invalid_type")
    if max_items is not None and len(raw) > max_items:
        raise InvalidParam(
            param,
            f"Invalid '{param}': array too long. Expected an array with maximum length {max_items}, "
            f"but got an array with length {len(raw)} instead.",
            "array_above_max_length",
        )
    items = [_normalize(item, f"{param}[{index}]") for index, item in enumerate(raw)]
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item["id"] in seen:
            raise duplicate_id(f"{param}[{index}].id", item["id"])
        seen.add(item["id"])
    return items


def duplicate_id(param: str, item_id: str) -> InvalidParam:
    return InvalidParam(param, f"Duplicate item id '{item_id}': item ids are unique in a conversation.")


def _normalize(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidParam(where, f"Invalid type for '{where}': expected an object.", "invalid_type")
    kind = item.get("type")
    if kind is None and "role" not in item:
        raise InvalidParam(
            f"{where}.type", f"Missing required parameter: '{where}.type'.", "missing_required_parameter"
        )
    if kind == "item_reference":
        # A reference points at an item kept elsewhere (a response's): a conversation keeps items whole.
        raise InvalidParam(
            f"{where}.type", "Item references cannot be added to a conversation; add the item itself."
        )
    if kind in (None, "message"):
        model: type[_Item] = OutputMessage if item.get("role") == "assistant" else InputMessage
    else:
        model = _BY_TYPE.get(kind, OtherItem) if isinstance(kind, str) else OtherItem
    parse_field(model, item, where)
    stored = dict(item)
    if model in (InputMessage, OutputMessage):
        stored["type"] = "message"
        if isinstance(stored["content"], str):
            stored["content"] = [_text_part(stored["role"], stored["content"])]
        else:
            stored["content"] = [_part(part) for part in stored["content"]]
    if stored.get("id") is None:
        stored["id"] = new_id(_PREFIXES.get(stored["type"], "item_"))
    if model is not OtherItem and stored.get("status") is None:
        stored["status"] = "completed"
    return stored


def _text_part(role: str, text: str) -> dict[str, Any]:
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "output_text" and "annotations" not in part:
        return {**part, "annotations": []}
    if part.get("type") == "input_image" and "detail" not in part:
        return {**part, "detail": "auto"}
    return dict(part)


# Bodies and parameters ----------------------------------------------------------------------------


class ConversationCreate(Strict):
    """POST /v1/conversations."""

    items: Any = None
    metadata: Any = None
    # OpenAI's end-user id for abuse monitoring: kept as the conversation's end user.
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None

    def check(self) -> None:
        self.metadata = check_metadata(self.metadata)
        self.items = normalize_items(self.items) if self.items is not None else []


class ConversationUpdate(Strict):
    """POST /v1/conversations/{id}: only `metadata` may change (null clears it)."""

    metadata: Any = Field(...)

    def check(self) -> None:
        self.metadata = check_metadata(self.metadata)


class ItemsCreate(Strict):
    """POST /v1/conversations/{id}/items (`include`, a query parameter, is read apart)."""

    items: Any = Field(...)

    def check(self) -> None:
        self.items = normalize_items(self.items)
        if not self.items:
            raise InvalidParam(
                "items",
                "Invalid 'items': empty array. Expected an array with minimum length 1, but got an empty "
                "array instead.",
                "empty_array",
            )


class ItemListParams(Open):
    """GET /v1/conversations/{id}/items: newest first unless `order` is asc (OpenAI's default)."""

    after: str | None = None
    limit: Annotated[int, Field(ge=1, le=LIST_MAX)] = 20
    order: Literal["asc", "desc"] = "desc"


def check_include(values: list[str]) -> list[str]:
    """`include` as OpenAI accepts it: each one of its includable fields."""
    for index, value in enumerate(values):
        if value not in INCLUDABLE:
            raise InvalidParam(
                f"include[{index}]",
                f"Invalid value: '{value}'. Supported values are: {', '.join(repr(v) for v in INCLUDABLE)}.",
            )
    return values


# Answers (for the OpenAPI document) -------------------------------------------------------------


class Conversation(Open):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str] = Field(default_factory=dict)


class ConversationDeleted(Open):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ConversationItem(Open):
    id: str
    type: str


class ConversationItemList(CursorList):
    data: list[ConversationItem]
