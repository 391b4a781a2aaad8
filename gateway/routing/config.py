"""Virtual models (`auto`): what the configuration says about them. Pure data (pydantic only), read
by the settings (`virtual_models`) and, through the Policy snapshot, by the request path."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

# What a request may ask of a model beyond plain text: `tools` (tools or functions), `json_schema`
# and `json_object` (response_format / text.format), `logprobs` (logprobs or top_logprobs).
Feature = Literal["tools", "json_schema", "json_object", "logprobs"]


class Candidate(BaseModel):
    """A served model a virtual model may choose, with what the operator declares of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context_length: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Tokens of context; unset: the engine's model card (`max_model_len`)."
    )
    features: list[Feature] | None = Field(
        None, description="Request features it serves; unset: every one (vLLM serves them for any model)."
    )
    latency_ms: Annotated[float, Field(ge=0)] | None = Field(
        None,
        description="Its typical latency, for a budget rule's `max_latency_ms`; unset: unknown (passes).",
    )


class ModalityRule(BaseModel):
    """Requests with image, audio or video parts go to candidates taking them as they are: what the
    model's route says it `accepts` (models.<name>.accepts, which media processing reads too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["modality"] = "modality"


class ContextRule(BaseModel):
    """Only candidates whose context holds the prompt and the asked completion (or `min_completion`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["context"] = "context"
    min_completion_tokens: int = Field(16, ge=0, description="Room kept for the answer without max_tokens.")


class FeatureRule(BaseModel):
    """Only candidates declaring every feature the request uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["features"] = "features"


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    examples: list[str] = Field(min_length=1, description="Example prompts of this task (its centroid).")
    models: list[str] = Field(min_length=1, description="The candidates serving this task, preferred first.")


class TaskRule(BaseModel):
    """A nearest-centroid classifier over an embedding model: the prompt's task picks its models."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["task"] = "task"
    embedding_model: str = Field(description="The served embedding model the examples and prompts go to.")
    tasks: dict[str, Task] = Field(min_length=1)
    min_similarity: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="Cosine similarity to the nearest centroid below which no task is chosen.",
    )


class BudgetRule(BaseModel):
    """Only candidates within a price (model_prices, USD per million tokens of the estimated request)
    and a declared latency."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["budget"] = "budget"
    max_usd_per_mtok: Annotated[float, Field(ge=0)] | None = None
    max_latency_ms: Annotated[float, Field(ge=0)] | None = None


Rule = Annotated[
    ModalityRule | ContextRule | FeatureRule | TaskRule | BudgetRule, Field(discriminator="type")
]


class VirtualModel(BaseModel):
    """A model name (e.g. `auto`) answered by one of its candidates, chosen per request by `rules`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["choose"] = "choose"
    candidates: dict[str, Candidate] = Field(
        min_length=1, description="The served models it may choose, in order of preference."
    )
    rules: list[Rule] = Field(
        default_factory=list, description="Evaluated in order, each narrowing the choice."
    )
    default: str | None = Field(
        None, description="The choice when the rules leave it open; unset: the first."
    )

    @model_validator(mode="after")
    def _known_names(self) -> VirtualModel:
        names = set(self.candidates)
        if self.default is not None and self.default not in names:
            raise ValueError(f"default {self.default!r} is not among the candidates")
        for rule in self.rules:
            if isinstance(rule, TaskRule):
                for task, spec in rule.tasks.items():
                    unknown = [model for model in spec.models if model not in names]
                    if unknown:
                        raise ValueError(f"task {task!r} names models that are not candidates: {unknown}")
        return self

    def preferred(self) -> list[str]:
        """The candidates, the default first."""
        names = list(self.candidates)
        if self.default is not None:
            names.remove(self.default)
            names.insert(0, self.default)
        return names


class Extractor(BaseModel):
    """How a sampled answer's final answer is read, for self-consistency's vote: its last non-empty
    line (`last_line`), a field of the JSON object it is (`json_field`, `field` a dotted path), or
    `regex`'s first group (the whole match when it has none; the last match in the answer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["last_line", "json_field", "regex"] = "last_line"
    field: str | None = Field(None, description="json_field: the dotted path of the field voted on.")
    pattern: str | None = Field(None, description="regex: the pattern whose first group is voted on.")

    @model_validator(mode="after")
    def _complete(self) -> Extractor:
        if self.type == "json_field" and not self.field:
            raise ValueError("a json_field extractor needs `field`")
        if self.type == "regex":
            if not self.pattern:
                raise ValueError("a regex extractor needs `pattern`")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"`pattern` is not a regular expression: {exc}") from exc
        return self


class SelfConsistencyModel(BaseModel):
    """A model name answered by the majority of `k` samples of a served `model` (one engine call,
    `n` = k), their final answers read by `extractor` (docs/orchestration.md, "Self-consistency")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["self_consistency"]
    model: str = Field(min_length=1, description="The served model sampled.")
    k: int = Field(5, ge=2, le=64, description="Samples drawn (one request with n = k).")
    extractor: Extractor = Field(default_factory=Extractor)
    temperature: Annotated[float, Field(ge=0, le=2)] | None = Field(
        0.7, description="Sampling temperature when the request sets none (the samples must differ)."
    )

    @field_validator("model")
    @classmethod
    def _plain(cls, model: str) -> str:
        return model.strip()


class Judge(BaseModel):
    """An ensemble's judge: a served model shown the question and the numbered answers, its answer
    constrained (vLLM's structured outputs) to one of the numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="The served model choosing the best answer.")
    instructions: str = Field(
        "You are judging answers to the conversation below. Reply with the number of the best answer.",
        description="The judge's system message.",
    )


class EnsembleModel(BaseModel):
    """A model name answered by several served models at once, their answers combined by a vote
    (`extractor`'s final answers), a `judge` model's choice, or the first to finish
    (docs/orchestration.md, "Ensembles")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["ensemble"]
    models: list[str] = Field(min_length=2, max_length=16, description="The served models asked.")
    combine: Literal["vote", "judge", "first"] = "vote"
    extractor: Extractor = Field(default_factory=Extractor)
    judge: Judge | None = None

    @model_validator(mode="after")
    def _judged(self) -> EnsembleModel:
        if self.combine == "judge" and self.judge is None:
            raise ValueError("`combine: judge` needs `judge`")
        return self


def _mode(value: Any) -> str:
    mode = value.get("mode", "choose") if isinstance(value, dict) else getattr(value, "mode", "choose")
    return str(mode)


# A virtual model of any mode: `choose` (the default, `auto`'s rules), `self_consistency`, `ensemble`.
AnyVirtual = Annotated[
    Annotated[VirtualModel, Tag("choose")]
    | Annotated[SelfConsistencyModel, Tag("self_consistency")]
    | Annotated[EnsembleModel, Tag("ensemble")],
    Discriminator(_mode),
]
