"""A virtual model's choice: its rules evaluated in order over the candidates, each narrowing them.

No I/O here but the task rule's classifier, handed in as `classify` (one embedding call, made only
when a task rule is reached). A rule that would leave no candidate is passed over (the context rule
instead keeps the longest context: the engine then says what is too long); the choice is the first
candidate left, in the order of preference (the default first, a task's own order once one is
chosen), and is named by the last rule that changed the candidates ("default" when none did).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.routing.config import (
    BudgetRule,
    ContextRule,
    FeatureRule,
    ModalityRule,
    Rule,
    TaskRule,
    VirtualModel,
)


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request needs of a model, read from its body (gateway/routing/facts.py)."""

    prompt_tokens: int
    completion_tokens: int | None = None
    modalities: frozenset[str] = frozenset()  # beyond text: image, audio, video
    features: frozenset[str] = frozenset()
    text: str = ""  # what the classifier reads: the last user turn


@dataclass(frozen=True, slots=True)
class Option:
    """A candidate as the rules see it: its card's context, its declared abilities, its price."""

    name: str
    context_length: int | None = None
    accepts: frozenset[str] = frozenset({"text"})
    features: frozenset[str] | None = None  # None: every feature
    usd_per_mtok: tuple[float, float] = (0.0, 0.0)  # prompt, completion
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    model: str
    rule: str

    def header(self) -> str:
        """`x-tantra-model-choice`: the model, and the rule that chose it."""
        return f"{self.model}; rule={self.rule}"


# The task rule's classifier: the task the text is nearest to, or None below its min_similarity.
Classify = Callable[[TaskRule, str], Awaitable[str | None]]


async def choose(
    virtual: VirtualModel, options: Sequence[Option], asked: Asked, classify: Classify
) -> Choice:
    """The candidate `virtual`'s rules leave first, and the rule that decided it. `options` are the
    candidates being served (the key may use), put in `virtual`'s order of preference here."""
    rank = {name: i for i, name in enumerate(virtual.preferred())}
    left = sorted((o for o in options if o.name in rank), key=lambda o: rank[o.name])
    decided = "default"
    for rule in virtual.rules:
        if len(left) <= 1:
            break
        kept, label = await _apply(rule, left, asked, classify)
        if kept and [o.name for o in kept] != [o.name for o in left]:
            left, decided = kept, label
    return Choice(left[0].name, decided)


async def _apply(
    rule: Rule, left: list[Option], asked: Asked, classify: Classify
) -> tuple[list[Option], str]:
    if isinstance(rule, ModalityRule):
        media = asked.modalities - {"text"}
        return ([o for o in left if media <= o.accepts] if media else left), "modality"
    if isinstance(rule, ContextRule):
        return _fitting(rule, left, asked), "context"
    if isinstance(rule, FeatureRule):
        return [o for o in left if o.features is None or asked.features <= o.features], "features"
    if isinstance(rule, TaskRule):
        task = await classify(rule, asked.text) if asked.text.strip() else None
        if task is None:
            return left, "task"
        by_name = {o.name: o for o in left}
        return [by_name[name] for name in rule.tasks[task].models if name in by_name], f"task:{task}"
    return _within_budget(rule, left, asked), "budget"


def _fitting(rule: ContextRule, left: list[Option], asked: Asked) -> list[Option]:
    need = asked.prompt_tokens + (asked.completion_tokens or rule.min_completion_tokens)
    fits = [o for o in left if o.context_length is None or o.context_length >= need]
    if fits:
        return fits
    # Nothing holds it: the longest context is the best try (its engine says what is too long).
    longest = max(o.context_length or 0 for o in left)
    return [o for o in left if o.context_length == longest]


def _within_budget(rule: BudgetRule, left: list[Option], asked: Asked) -> list[Option]:
    completion = asked.completion_tokens or 0
    kept = []
    for option in left:
        prompt_price, completion_price = option.usd_per_mtok
        usd_per_mtok = _blended(prompt_price, completion_price, asked.prompt_tokens, completion)
        if rule.max_usd_per_mtok is not None and usd_per_mtok > rule.max_usd_per_mtok:
            continue
        latency = option.latency_ms
        if rule.max_latency_ms is not None and latency is not None and latency > rule.max_latency_ms:
            continue
        kept.append(option)
    return kept


def _blended(prompt_price: float, completion_price: float, prompt: int, completion: int) -> float:
    """USD per million tokens of this request's mix of prompt and completion tokens."""
    total = prompt + completion
    if total == 0:
        return max(prompt_price, completion_price)
    return (prompt_price * prompt + completion_price * completion) / total
