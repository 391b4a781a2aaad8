"""Stored chat completions on the wire: OpenAI's `metadata` rules, the update body, the list
parameters, and the objects the endpoints answer with (for the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.protocol.common import InvalidParam, Open, Strict

# OpenAI's bounds on `metadata`: 16 pairs, keys up to 64 characters, string values up to 512.
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512
# OpenAI's bounds on a list's `limit`.
LIST_MAX = 100


def check_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """`value` as OpenAI accepts `metadata` (None: no metadata), or the 400 OpenAI gives, naming
    the offending pair in `param` (`metadata.<key>`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParam(
            param,
            f"Invalid type for '{param}': expected an object, but got {_kind(value)} instead.",
            "invalid_type",
        )
    if len(value) > METADATA_MAX_PAIRS:
        raise InvalidParam(
            param,
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(value)} properties instead.",
            "object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise InvalidParam(
                param,
                f"Invalid '{param}': key too long. Expected a key with maximum length "
                f"{METADATA_MAX_KEY}, but got a key with length {len(key)} instead.",
                "string_above_max_length",
            )
        where = f"{param}.{key}"
        if not isinstance(item, str):
            raise InvalidParam(
                where,
                f"Invalid type for '{where}': expected a string, but got {_kind(item)} instead.",
                "invalid_type",
            )
        if len(item) > METADATA_MAX_VALUE:
            raise InvalidParam(
                where,
                f"Invalid '{where}': string too long. Expected a string with maximum length "
                f"{METADATA_MAX_VALUE}, but got a string with length {len(item)} instead.",
                "string_above_max_length",
            )
    return dict(value)


def _kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a decimal", str: "a string", list: "an array"}
    return kinds.get(type(value), "an object" if isinstance(value, dict) else "null")


class MetadataUpdate(Strict):
    """POST /v1/chat/completions/{id}: only `metadata` may change (null clears it)."""

    metadata: Any = Field(...)

    def check(self) -> None:
        self.metadata = check_metadata(self.metadata)


class ListParams(Open):
    """OpenAI's list parameters (the metadata filter, `metadata[key]=value`, is read apart); other
    query parameters are ignored."""

    after: str | None = None
    limit: Annotated[int, Field(ge=1, le=LIST_MAX)] = 20
    order: Literal["asc", "desc"] = "asc"


class ChatCompletionListParams(ListParams):
    model: str | None = None


class StoredChatCompletion(Open):
    """A stored chat completion: the answer as it was sent, with its metadata and the request's
    parameters OpenAI echoes."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    request_id: str | None = None
    input_user: str | None = None


class StoredMessage(Open):
    id: str
    role: str
    content: str | None = None
    name: str | None = None
    content_parts: list[dict[str, Any]] | None = None


class CursorList(Open):
    object: Literal["list"] = "list"
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class StoredChatCompletionList(CursorList):
    data: list[StoredChatCompletion]


class StoredMessageList(CursorList):
    data: list[StoredMessage]


class ChatCompletionDeleted(Open):
    id: str
    object: Literal["chat.completion.deleted"] = "chat.completion.deleted"
    deleted: bool = True
