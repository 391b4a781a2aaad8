"""OpenAI's 13 moderation categories, in the order its API lists them."""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
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
)
# The categories OpenAI's omni-moderation judges in images too (the others are text only).
IMAGE_CATEGORIES = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
)

Scores = dict[str, float]


def empty_scores() -> Scores:
    """Every category at 0: what a classifier that cannot judge a category reports for it."""
    return dict.fromkeys(CATEGORIES, 0.0)


def merged(*many: Scores) -> Scores:
    """The highest score of each category over several inputs (or classifiers)."""
    out = empty_scores()
    for scores in many:
        for name, value in scores.items():
            out[name] = max(out[name], value)
    return out
