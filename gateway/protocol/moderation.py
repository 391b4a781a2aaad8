"""POST /v1/moderations: OpenAI's request body (a string, strings, or text and image_url parts),
and the per-tenant moderation policy the admin API takes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.protocol.common import Strict

# OpenAI's moderation models; `omni-moderation-*` judge images too, `text-moderation-*` text only.
OMNI_MODELS = ("omni-moderation-latest", "omni-moderation-2024-09-26")
TEXT_MODELS = ("text-moderation-latest", "text-moderation-stable", "text-moderation-007")


class ModerationImageUrl(Strict):
    url: Annotated[str, Field(min_length=1)]


class ModerationImagePart(Strict):
    type: Literal["image_url"]
    image_url: ModerationImageUrl


class ModerationTextPart(Strict):
    type: Literal["text"]
    text: str


ModerationPart = Annotated[ModerationTextPart | ModerationImagePart, Field(discriminator="type")]


class ModerationRequest(Strict):
    input: (
        str | Annotated[list[str], Field(min_length=1)] | Annotated[list[ModerationPart], Field(min_length=1)]
    )
    model: str = "omni-moderation-latest"


Action = Literal["off", "flag", "block"]
# OpenAI's 13 categories (adapters/moderation/categories.py holds the same, for the classifiers).
Category = Literal[
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
]


class ModerationPolicy(Strict):
    """What moderation does for a tenant (the operator's settings when a tenant has none).

    `input`: the prompt is moderated before the model: `block` refuses a flagged one (400
    `content_policy_violation`), `flag` records it and lets it through. `output`: the answer is
    moderated after the model: `block` withholds a flagged JSON answer and ends a stream at the
    first flagged sentence (`finish_reason: "content_filter"`), `flag` only records it."""

    input: Action = "off"
    output: Action = "off"
    # A category is flagged at or above this score.
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    # Category -> words or phrases that flag it whatever the classifiers say (whole words, any case).
    banned_terms: dict[Category, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)
    # Ask the LLM judge too (when the operator configured one: `moderation_judge_model`).
    judge: bool = False
