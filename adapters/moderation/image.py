"""Image moderation by NudeNet's detector (its 320n.onnx, an ONNX YOLOv8n trained on exposed and
covered body parts, ships in the `nudenet` wheel; run by onnxruntime on the CPU).

Mapping: `sexual` is the highest confidence among the exposed-genitalia, exposed-breast,
exposed-buttocks and exposed-anus detections. `sexual/minors` is never asserted from an image:
the detector estimates no age, and saying "minor" from nudity alone would be wrong in both
directions (a false accusation of the gravest kind, or a false sense of safety); it scores 0 and
is left to human review of what `sexual` flags. NudeNet judges no other category (0).

`nudity_filter` is the image safety hook's plug-in (`TANTRA_MEDIA_IMAGE_FILTER=
adapters.moderation.image:nudity_filter`): chat images it judges sexual are refused before any
model sees them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from adapters.images import ImageFacts
from adapters.moderation.categories import Scores, empty_scores
from adapters.policy import Verdict

SEXUAL_LABELS = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
_detector: Any = None


def _nudenet() -> Any:
    """The detector, loaded once per process (~40 ms; onnxruntime with one thread, to share the CPU)."""
    global _detector
    if _detector is None:
        from nudenet import NudeDetector

        _detector = NudeDetector()
    return _detector


def detections(image: Image.Image) -> list[dict[str, Any]]:
    """NudeNet's raw detections: `class`, `score`, `box`."""
    # NudeNet converts RGBA to BGR itself (cv2.COLOR_RGBA2BGR), so it is handed RGBA.
    pixels = np.asarray(image.convert("RGBA"))
    return list(_nudenet().detect(pixels))


def sexual_score(found: list[dict[str, Any]]) -> float:
    return max((float(d["score"]) for d in found if d.get("class") in SEXUAL_LABELS), default=0.0)


def image_scores(image: Image.Image) -> Scores:
    scores = empty_scores()
    scores["sexual"] = round(sexual_score(detections(image)), 6)
    return scores


class NudityFilter:
    """The image safety hook's check: refuses an image whose `sexual` score reaches `threshold`."""

    name = "nudenet"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def __call__(self, facts: ImageFacts, image: Image.Image) -> Verdict:
        score = image_scores(image)["sexual"]
        if score >= self.threshold:
            return Verdict(False, f"the image was classified as sexual content ({score:.2f})")
        return Verdict(True)


def nudity_filter() -> NudityFilter:
    """The factory the image safety hook calls once per worker; its threshold is
    `TANTRA_MODERATION_IMAGE_THRESHOLD` (0.5 by default)."""
    return NudityFilter(float(os.environ.get("TANTRA_MODERATION_IMAGE_THRESHOLD", "0.5")))
