"""Content moderation's classifiers, run offline from weights that ship in PyPI wheels: text by
alt-profanity-check's linear model (`text.py`), images by NudeNet's detector (`image.py`), the
operator's banned terms, and OpenAI's 13 categories they are reported in (`categories.py`).
Pure: no HTTP, no settings; the gateway runs them in worker processes (gateway/moderation/)."""

from adapters.moderation.categories import CATEGORIES, IMAGE_CATEGORIES, Scores, empty_scores
from adapters.moderation.image import image_scores, nudity_filter
from adapters.moderation.terms import BannedTerms
from adapters.moderation.text import text_scores

__all__ = [
    "CATEGORIES",
    "IMAGE_CATEGORIES",
    "BannedTerms",
    "Scores",
    "empty_scores",
    "image_scores",
    "nudity_filter",
    "text_scores",
]
