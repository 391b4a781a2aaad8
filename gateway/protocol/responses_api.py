"""OpenAI's Responses API on the wire: the create request as the gateway reads it (the engine, vLLM's
own /v1/responses, judges the rest: unknown keys are forwarded), and the list parameters of
GET /v1/responses/{id}/input_items."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gateway.protocol.common import InvalidParam, Open, Strict
from gateway.protocol.stored import LIST_MAX, check_metadata


class TantraResponseOptions(Strict):
    """The gateway's own extensions of a Responses create (`tantra`: never sent to the engine)."""

    # Score each cited sentence against its source (docs/orchestration.md, "Citation verification");
    # None: the deployment's TANTRA_CITATIONS_VERIFY. `citation_method` overrides its method.
    verify_citations: bool | None = None
    citation_method: Literal["embedding", "judge"] | None = None


class ResponsesRequest(Open):
    """POST /v1/responses. `input` is a string or a list of items (messages, function calls and
    their outputs...); `store` defaults to true, as OpenAI's does."""

    model: str
    input: str | list[dict[str, Any]] = Field(...)
    instructions: str | None = None
    store: bool | None = True
    background: bool | None = False
    stream: bool | None = False
    previous_response_id: str | None = None
    conversation: Any = None
    tools: list[dict[str, Any]] | None = None
    metadata: Any = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None
    tantra: TantraResponseOptions | None = None

    def check(self) -> None:
        if self.store is not False:
            self.metadata = check_metadata(self.metadata)
        if self.background and self.store is False:
            raise InvalidParam(
                "background",
                "Background responses must be stored: set `store` to true or leave it out.",
                "invalid_value",
            )
        if self.conversation is not None:
            self.conversation = _conversation_id(self.conversation)
            if self.previous_response_id is not None:
                # OpenAI refuses both: a conversation already holds the turns before this one.
                raise InvalidParam(
                    "conversation",
                    "Mutually exclusive parameters: provide either `conversation` or `previous_response_id`, "
                    "not both.",
                    "mutually_exclusive_parameters",
                )
        if self.previous_response_id is not None and not self.previous_response_id:
            raise InvalidParam("previous_response_id", "`previous_response_id` is empty.", "invalid_value")


def _conversation_id(value: Any) -> str:
    """`conversation` as OpenAI takes it: the conversation's id, or an object with its `id`."""
    given = value.get("id") if isinstance(value, dict) else value
    if not isinstance(given, str) or not given:
        raise InvalidParam(
            "conversation",
            "`conversation` must be a conversation id or an object with its `id`.",
            "invalid_type",
        )
    return given


class InputItemsParams(Open):
    """GET /v1/responses/{id}/input_items: OpenAI's list parameters, newest first by default."""

    after: str | None = None
    limit: Annotated[int, Field(ge=1, le=LIST_MAX)] = 20
    order: Literal["asc", "desc"] = "desc"


class RetrieveParams(Open):
    """GET /v1/responses/{id}: `stream` replays a background response's events after
    `starting_after` (a sequence number)."""

    stream: bool = False
    starting_after: Annotated[int, Field(ge=-1)] | None = None
