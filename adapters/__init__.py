"""Multimodal preprocessing in front of the language core: images, documents and video turned into
what the served model takes. Pure preprocessing with no knowledge of HTTP routes; the gateway calls
it (gateway/media/service.py) and maps its MediaError to OpenAI's envelope. See docs/adapters.md."""

from adapters.errors import MediaError
from adapters.fetch import UrlFetcher, UrlPolicy
from adapters.limits import MediaLimits, Tally
from adapters.ocr import Ocr
from adapters.parts import TEXT_ONLY, MediaPart, Modality, check_counts, find_media, route
from adapters.pipeline import Job, Preprocessed, Preprocessor
from adapters.policy import ImageCheck, ImageFilter, SizeTypePolicy, Verdict, load_check

__all__ = [
    "TEXT_ONLY",
    "ImageCheck",
    "ImageFilter",
    "Job",
    "MediaError",
    "MediaLimits",
    "MediaPart",
    "Modality",
    "Ocr",
    "Preprocessed",
    "Preprocessor",
    "SizeTypePolicy",
    "Tally",
    "UrlFetcher",
    "UrlPolicy",
    "Verdict",
    "check_counts",
    "find_media",
    "load_check",
    "route",
]
