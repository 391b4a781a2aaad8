"""The settings of content moderation (issue 21, point 3): `/v1/moderations`, its classifiers'
worker pool, the optional LLM judge, and the operator's default policy for tenants without one
of their own (set per tenant through `/admin/moderation/policies/{tenant_id}`). docs/moderation.md.

A mixin of `Settings` (gateway/settings/schema.py); all restart only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ModerationAction = Literal["off", "flag", "block"]


class ModerationFields(BaseModel):
    """Moderation's endpoint, classifiers and default policy."""

    moderation_enabled: bool = Field(True, description="Serve `/v1/moderations` and the tenants' policies.")
    # The classifiers (alt-profanity-check, NudeNet) run in their own processes, started on first use;
    # one is enough for a replica: a text batch takes ~1 ms, an image ~100 ms.
    moderation_workers: int = Field(1, ge=1, description="Worker processes of the moderation classifiers.")
    moderation_executor: Literal["process", "thread"] = Field(
        "process", description="`process` (default) or `thread` (tests; the classifiers then share the GIL)."
    )
    moderation_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for the classifiers on one request; then 503."
    )
    # A category is flagged at or above this score, on /v1/moderations and in the default policy.
    moderation_threshold: float = Field(0.5, gt=0, le=1, description="Score at which a category is flagged.")
    # The default policy: what happens to the prompts and answers of tenants without their own.
    moderation_input: ModerationAction = Field(
        "off", description="Prompts before the model: `off`, `flag` (record only) or `block` (400)."
    )
    moderation_output: ModerationAction = Field(
        "off", description="Answers after the model: `off`, `flag` (record only) or `block` (withheld/cut)."
    )
    # Category -> words or phrases that flag it on every tenant (whole words, any case), on
    # /v1/moderations too: the deterministic list an operator keeps beside the classifiers.
    moderation_banned_terms: dict[str, list[str]] = Field(
        default_factory=dict, description="Category -> banned words or phrases, for every tenant."
    )
    # A served model asked, Llama Guard's way, for the categories the classifiers cannot judge
    # (threats, self-harm, violence, illicit advice); off unless named. Used when a tenant's policy
    # (or the default, `moderation_judge`) asks for it.
    moderation_judge_model: str | None = Field(
        None, description="A served model used as the LLM judge (structured outputs); unset: no judge."
    )
    moderation_judge: bool = Field(False, description="The default policy asks the LLM judge too.")
    moderation_policy_cache_s: float = Field(
        5.0, ge=0, description="How long a replica trusts a tenant's policy before reading it again."
    )
