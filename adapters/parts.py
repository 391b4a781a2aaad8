"""Finding the media parts of a chat request and naming each the way OpenAI's errors do."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from adapters.errors import MediaError
from adapters.limits import MediaLimits

Kind = Literal["image", "document", "video", "audio"]
Modality = Literal["text", "image", "video", "audio"]

# The content part types that carry media, and the field that holds each one's source.
PART_TYPES: dict[str, tuple[Kind, str]] = {
    "image_url": ("image", "image_url"),
    "file": ("document", "file"),
    "video_url": ("video", "video_url"),
    "input_audio": ("audio", "input_audio"),
    "audio_url": ("audio", "audio_url"),
}
TEXT_ONLY: frozenset[Modality] = frozenset({"text"})


@dataclass(frozen=True)
class MediaPart:
    message: int
    index: int
    kind: Kind
    part: dict[str, Any]

    @property
    def param(self) -> str:
        field = PART_TYPES[str(self.part["type"])][1]
        return f"messages[{self.message}].content[{self.index}].{field}"

    @property
    def url(self) -> str | None:
        """The URL of an image or video part (a `data:` URL or http(s))."""
        source = self.part.get(PART_TYPES[str(self.part["type"])][1])
        if isinstance(source, dict):
            url = source.get("url")
            return url if isinstance(url, str) else None
        return source if isinstance(source, str) else None  # vLLM also takes a bare string


def find_media(payload: dict[str, Any]) -> list[MediaPart]:
    """Every media part of the request's messages, in order."""
    found: list[MediaPart] = []
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return found
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in PART_TYPES:
                found.append(MediaPart(m, p, PART_TYPES[part["type"]][0], part))
    return found


def check_counts(parts: list[MediaPart], limits: MediaLimits) -> None:
    """Refuse too many parts or images before any is decoded."""
    if len(parts) > limits.max_parts:
        extra = parts[limits.max_parts]
        raise MediaError(
            extra.param,
            f"This request has {len(parts)} media parts; at most {limits.max_parts} are allowed.",
            code="too_many_parts",
        )
    images = [part for part in parts if part.kind == "image"]
    if len(images) > limits.max_images:
        extra = images[limits.max_images]
        raise MediaError(
            extra.param,
            f"This request has {len(images)} images; at most {limits.max_images} are allowed.",
            code="too_many_images",
        )


def route(
    part: MediaPart, accepts: Collection[Modality], *, can_derive_text: bool, can_transcribe: bool = False
) -> Literal["native", "derive"]:
    """What the served model gets for this part: the part itself, or text derived from it (OCR for
    images and video, a transcript for audio)."""
    if part.kind in accepts:
        return "native"
    if part.kind == "audio" and not can_transcribe:
        raise MediaError(
            part.param,
            "This model does not take audio, and this gateway has no speech adapter to transcribe it.",
            code="unsupported_content_part",
        )
    if part.kind in ("image", "video") and not can_derive_text:
        raise MediaError(
            part.param,
            f"This model reads text only and cannot take {part.kind} parts, and text cannot be "
            "derived from them here (OCR is off).",
            code="unsupported_content_part",
        )
    return "derive"
