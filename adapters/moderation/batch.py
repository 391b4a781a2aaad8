"""One call into a moderation worker: several inputs, each some texts and some images, scored at
once (the text model takes the whole batch in one call). What runs in the worker process."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.limits import MediaLimits, Tally
from adapters.moderation.categories import Scores, merged
from adapters.moderation.image import image_scores
from adapters.moderation.text import text_scores


@dataclass(frozen=True)
class Item:
    """One input to judge: its texts and its images (encoded bytes, with the param they came from)."""

    texts: list[str] = field(default_factory=list)
    images: list[tuple[str, bytes]] = field(default_factory=list)


def score_items(items: list[Item], limits: MediaLimits | None = None) -> list[Scores]:
    """Each item's scores: the highest of each category over its texts and images. An image that
    cannot be decoded, or is too large, raises MediaError naming its param."""
    from adapters.images import open_image  # Pillow, already loaded by the adapters

    texts = [text for item in items for text in item.texts]
    scored = iter(text_scores(texts))
    tally = Tally(limits or MediaLimits())
    out = []
    for item in items:
        parts = [next(scored) for _ in item.texts]
        for param, data in item.images:
            image, _ = open_image(data, param, tally)
            parts.append(image_scores(image))
        out.append(merged(*parts))
    return out


def warm() -> None:
    """Load both models (a worker's start), so the first request does not pay for it."""
    from adapters.moderation.image import _nudenet

    text_scores(["warm up"])
    _nudenet()
