"""Finding the media parts of a chat request and naming each the way OpenAI's errors do."""

from __future__ import annotations

import base64
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from adapters.errors import MediaError
from adapters.limits import MediaLimits
from adapters.sources import Blob

Kind = Literal["image", "document", "video", "audio"]
Modality = Literal["text", "image", "video", "audio"]

# The content part types that carry media, and the field that holds each one's source.
PART_TYPES: dict[str, tuple[Kind, str]] = {
    "image_url": ("image", "image_url"),
    "input_image": ("image", "image_url"),  # the Responses API's shape, which vLLM's chat also reads
    "file": ("document", "file"),
    "video_url": ("video", "video_url"),
    "input_audio": ("audio", "input_audio"),
    "audio_url": ("audio", "audio_url"),
}
TEXT_ONLY: frozenset[Modality] = frozenset({"text"})
_MIME = re.compile(r"^[\w.+-]+/[\w.+-]+$")
_DEFAULT_MIME: dict[Kind, str] = {
    "image": "image/png",
    "document": "application/octet-stream",
    "video": "video/mp4",
    "audio": "audio/wav",
}
# Part types that carry text only (vLLM's chat parser reads these as text).
TEXT_TYPES = frozenset({"text", "input_text", "output_text", "refusal", "thinking", "tool_reference"})
# Every field vLLM's chat parser reads media from, whatever the part's `type` says: without a
# `type`, or with a `uuid`, it takes the first of these it finds. A part may carry only the one
# field its type names, so the gateway and the engine always read the same source.
MEDIA_FIELDS = frozenset(
    {"image_url", "input_image", "image_pil", "image_embeds", "audio_url", "input_audio"}
    | {"audio_embeds", "video_url", "video_embeds", "prompt_embeds", "file"}
)


@dataclass(frozen=True)
class MediaPart:
    message: int
    index: int
    kind: Kind
    part: dict[str, Any]

    @property
    def field(self) -> str:
        return PART_TYPES[str(self.part["type"])][1]

    @property
    def param(self) -> str:
        return f"messages[{self.message}].content[{self.index}].{self.field}"

    @property
    def url(self) -> str | None:
        """The URL of an image or video part (a `data:` URL or http(s))."""
        source = self.part.get(self.field)
        if isinstance(source, dict):
            url = source.get("url")
            return url if isinstance(url, str) else None
        return source if isinstance(source, str) else None  # vLLM also takes a bare string


def find_media(payload: dict[str, Any]) -> list[MediaPart]:
    """Every media part of the request's messages, in order. A part the gateway would not read
    the way the engine does (see `screen`) is refused here, before anything is fetched."""
    found: list[MediaPart] = []
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return found
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for p, part in enumerate(content):
            if isinstance(part, dict) and screen(part, f"messages[{m}].content[{p}]"):
                found.append(MediaPart(m, p, PART_TYPES[part["type"]][0], part))
    return found


def screen(part: dict[str, Any], param: str) -> bool:
    """True for a media part the gateway handles, False for a text part; anything else is a 400:
    a part type it does not check (`image_pil`, embeddings, unknown types), a media field without
    a `type`, or media fields beside the one its type names (vLLM could read another one)."""
    kind = part.get("type")
    carried = [key for key in part if key in MEDIA_FIELDS]
    if kind in TEXT_TYPES and not carried:
        return False
    if isinstance(kind, str) and kind in PART_TYPES and carried == [PART_TYPES[kind][1]]:
        return True
    if not isinstance(kind, str) or kind in TEXT_TYPES or kind in PART_TYPES:
        message = "This content part needs a `type` and exactly the one media field that type names."
        if not carried and not isinstance(kind, str):
            return False  # no type and no media: the engine refuses it, nothing is fetched
    else:
        message = f"Content parts of type `{kind[:40]}` are not accepted by this gateway."
    raise MediaError(param, message, code="unsupported_content_part")


def refuse_remote_media(payload: dict[str, Any]) -> None:
    """With media processing off, parts still reach the engine only as sent data: a part the gateway
    does not know, or one with an http(s) URL the engine would fetch itself, is a 400."""
    for part in find_media(payload):
        url = part.url
        if url is not None and url[:5].lower() != "data:":
            raise MediaError(
                part.param,
                "This gateway does not fetch media URLs; send the content as a base64 `data:` URL.",
                code="url_not_allowed",
            )


def forwarded(part: MediaPart, fetched: Blob | None) -> dict[str, Any]:
    """A part for a model that takes it itself: media the gateway fetched (and checked) goes on as
    those bytes in a `data:` URL, never as the URL, so the engine fetches nothing itself."""
    if fetched is None:
        return part.part
    mime = fetched.mime if fetched.mime and fetched.mime.startswith(part.kind + "/") else None
    if mime is None or not _MIME.match(mime) or mime == "video/jpeg":  # vLLM reads that as frames
        mime = _DEFAULT_MIME[part.kind]
    source = part.part.get(part.field)
    source = dict(source) if isinstance(source, dict) else {}
    source["url"] = f"data:{mime};base64," + base64.b64encode(fetched.data).decode("ascii")
    return {**part.part, part.field: source}


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
