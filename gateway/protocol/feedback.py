"""Feedback on the wire (Tantra's extension, issue 20 point 4): `POST /v1/feedback` rates a stored
chat completion, a stored response or an item of a conversation; the `feedback` object; its list
(OpenAI's cursor page); and the export's body and answer (docs/fine-tuning.md, "Feedback")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictInt

from gateway.protocol.common import InvalidParam, Strict
from gateway.protocol.files import FileObject
from gateway.protocol.stored import check_metadata

TARGETS = ("chat.completion", "response", "conversation.item")
Thumb = Literal["up", "down"]
Stars = Annotated[StrictInt, Field(ge=1, le=5)]


def score(rating: str | int | None) -> float | None:
    """A rating on one scale, 0 (worst) to 1 (best): thumbs up 1, down 0, n stars (n - 1) / 4."""
    if rating is None:
        return None
    if rating in ("up", "down"):
        return 1.0 if rating == "up" else 0.0
    return (int(rating) - 1) / 4


class FeedbackCreate(Strict):
    """What is rated (exactly one of `completion_id`, `response_id`, or `conversation_id` with
    `item_id`) and at least one of `rating`, `label`, `comment`, `correction`."""

    completion_id: str | None = Field(
        None, max_length=160, description="A chat completion stored with `store: true`."
    )
    choice_index: int = Field(0, ge=0, le=127, description="Which of the completion's choices is rated.")
    response_id: str | None = Field(None, max_length=160, description="A stored response (`resp_...`).")
    conversation_id: str | None = Field(None, max_length=160, description="The item's conversation.")
    item_id: str | None = Field(None, max_length=160, description="An item of `conversation_id`.")
    rating: Thumb | Stars | None = Field(None, description='"up" or "down", or 1 (worst) to 5 (best).')
    label: str | None = Field(None, min_length=1, max_length=64, description="A category of the app's own.")
    comment: str | None = Field(None, max_length=16_384, description="The end user's words.")
    correction: str | None = Field(
        None, min_length=1, max_length=65_536, description="The answer that should have been given."
    )
    user: str | None = Field(None, max_length=256, description="The end user giving the feedback.")
    metadata: Any = Field(None, description="Up to 16 string pairs, as OpenAI's `metadata`.")

    def check(self) -> None:
        self.metadata = check_metadata(self.metadata)
        named = [n for n in ("completion_id", "response_id", "conversation_id") if getattr(self, n)]
        if self.item_id is not None and self.conversation_id is None:
            raise InvalidParam("conversation_id", "'item_id' needs the 'conversation_id' it belongs to.")
        if self.conversation_id is not None and self.item_id is None:
            raise InvalidParam(
                "item_id", "Missing required parameter: 'item_id'.", "missing_required_parameter"
            )
        if len(named) != 1:
            raise InvalidParam(
                None if named else "completion_id",
                "Name exactly one thing to rate: 'completion_id', 'response_id', or 'conversation_id' "
                "with 'item_id'.",
            )
        if all(getattr(self, n) is None for n in ("rating", "label", "comment", "correction")):
            raise InvalidParam(
                "rating",
                "Give at least one of 'rating', 'label', 'comment' or 'correction'.",
                "missing_required_parameter",
            )


class Feedback(BaseModel):
    id: str
    object: Literal["feedback"] = "feedback"
    created_at: int
    target_type: Literal["chat.completion", "response", "conversation.item"]
    target_id: str
    conversation_id: str | None = None
    model: str | None = None
    rating: Thumb | int | None = None
    label: str | None = None
    comment: str | None = None
    correction: str | None = None
    user: str | None = None
    metadata: dict[str, str] = {}


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Feedback]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class FeedbackDeleted(BaseModel):
    id: str
    object: Literal["feedback.deleted"] = "feedback.deleted"
    deleted: bool


class FeedbackListParams(Strict):
    after: str | None = None
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    target_id: str | None = Field(None, max_length=160)
    target_type: Literal["chat.completion", "response", "conversation.item"] | None = None
    conversation_id: str | None = Field(None, max_length=160)
    rating: Literal["up", "down", "1", "2", "3", "4", "5"] | None = None
    label: str | None = Field(None, max_length=64)
    user: str | None = Field(None, max_length=256)


class FeedbackExport(Strict):
    """`supervised`: each correction as a chat example (and, with `include_rated`, each answer rated
    up or 4 stars and above as it was given). `dpo`: better versus worse answers to one prompt as
    preference pairs (a correction over the answer it corrects; a higher-rated answer over a
    lower-rated one)."""

    method: Literal["supervised", "dpo"] = "supervised"
    include_rated: bool = False
    label: str | None = Field(None, max_length=64, description="Only feedback with this label.")
    created_after: int | None = Field(None, ge=0, description="Only feedback given since (unix seconds).")
    filename: str | None = Field(None, min_length=1, max_length=200)


class FeedbackExported(BaseModel):
    object: Literal["feedback.export"] = "feedback.export"
    method: Literal["supervised", "dpo"]
    examples: int
    feedback_used: int
    file: FileObject
