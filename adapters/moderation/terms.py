"""The operator's (or a tenant's) banned terms: whole words or phrases, matched case-insensitively,
each list under the category a match is reported in (a match scores 1.0). Deterministic, where
the classifiers are statistical: what an operator uses for words they never want answered."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from adapters.moderation.categories import CATEGORIES, Scores, empty_scores


class BannedTerms:
    def __init__(self, terms: Mapping[str, Sequence[str]]) -> None:
        unknown = set(terms) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown moderation categories: {', '.join(sorted(unknown))}")
        self._patterns = {
            category: re.compile(r"\b(?:" + "|".join(re.escape(t) for t in words) + r")\b", re.IGNORECASE)
            for category, words in terms.items()
            if words
        }

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def scores(self, text: str) -> Scores:
        scores = empty_scores()
        for category, pattern in self._patterns.items():
            if pattern.search(text):
                scores[category] = 1.0
        return scores
