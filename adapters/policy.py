"""The safety hook every image passes before it reaches a model, OCR included.

The default checks size and type. A classifier plugs in by import path
(`TANTRA_MEDIA_IMAGE_FILTER=package.module:factory`): the factory is called once with no
arguments and returns a callable `(facts, image) -> Verdict`. Every decision is logged.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

import structlog
from PIL import Image

from adapters.errors import MediaError
from adapters.images import FORMATS, ImageFacts

_log = structlog.stdlib.get_logger("tantra.adapters")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


ImageCheck = Callable[[ImageFacts, Image.Image], Verdict]


class SizeTypePolicy:
    """Refuses formats outside `formats` and images too small to mean anything or too elongated
    to be anything but a trick (a 1 x 100000 strip)."""

    name = "size_type"

    def __init__(self, formats: Collection[str] = FORMATS, *, min_side: int = 1, max_aspect: float = 200.0):
        self.formats = frozenset(f.upper() for f in formats)
        self.min_side = min_side
        self.max_aspect = max_aspect

    def __call__(self, facts: ImageFacts, image: Image.Image) -> Verdict:
        if facts.format not in self.formats:
            return Verdict(False, f"format {facts.format} is not allowed")
        if min(facts.width, facts.height) < self.min_side:
            return Verdict(False, f"a side is shorter than {self.min_side} pixels")
        if max(facts.width, facts.height) / max(1, min(facts.width, facts.height)) > self.max_aspect:
            return Verdict(False, f"the aspect ratio is beyond {self.max_aspect:g}:1")
        return Verdict(True)


class ImageFilter:
    """The default policy, then the plugged-in classifier if any; the first refusal wins."""

    def __init__(self, checks: list[ImageCheck]) -> None:
        self._checks = checks

    def check(self, facts: ImageFacts, image: Image.Image) -> None:
        for check in self._checks:
            name = getattr(check, "name", None) or getattr(check, "__qualname__", type(check).__name__)
            verdict = check(facts, image)
            _log.info(
                "image_filter",
                check=name,
                allowed=verdict.allowed,
                reason=verdict.reason or None,
                param=facts.param,
                format=facts.format,
                width=facts.width,
                height=facts.height,
            )
            if not verdict.allowed:
                raise MediaError(
                    facts.param,
                    f"This image was refused by the gateway's image policy: {verdict.reason or name}.",
                    code="image_rejected",
                )


def load_check(import_path: str) -> ImageCheck:
    """`package.module:factory` -> the check the factory returns (the factory runs once)."""
    module_name, _, attribute = import_path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{import_path!r} is not of the form package.module:factory")
    factory = getattr(importlib.import_module(module_name), attribute)
    check = factory()
    if not callable(check):
        raise ValueError(f"{import_path} returned {type(check).__name__}, which is not callable")
    return check
