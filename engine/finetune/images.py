"""A training line's images: its `image_url` parts' data URLs decoded as vLLM decodes them (RGB),
in the order the chat template places their tags. Shared by the vision-language bases."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from engine.finetune.data import IGNORE, SupervisedExample

if TYPE_CHECKING:
    import torch

__all__ = ["ExpandedImages", "decode_image", "expand_image_tags", "images_of", "placed_embeddings"]

# An image's block: its token ids, the offsets in them that take the image's features, its pixels.
ImageBlock = tuple[list[int], list[int], Any]


def decode_image(url: str) -> Image.Image:
    """An `image_url` part's data URL (`data:image/...;base64,...`) as RGB, as vLLM loads it."""
    header, sep, payload = url.partition(",")
    if not (sep and header.startswith("data:image/") and header.endswith(";base64")):
        raise ValueError("image_url parts must be base64 data URLs (data:image/...;base64,...)")
    try:
        return Image.open(io.BytesIO(base64.b64decode(payload, validate=True))).convert("RGB")
    except (binascii.Error, OSError) as error:
        raise ValueError(f"an image_url part is not a readable image: {error}") from error


def images_of(messages: Sequence[dict[str, Any]]) -> list[Image.Image]:
    """Every `image_url` part's image, in the conversation's order (the order of the template's tags)."""
    images = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                images.append(decode_image(str(url)))
    return images


def placed_embeddings(
    embed_tokens: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, features: Sequence[Any]
) -> torch.Tensor:
    """(batch, seq, hidden) input embeddings: the token embeddings of `ids`, with each row's image
    features (`(positions, values)` or None) put in place of its image tokens."""
    import torch

    embeds = embed_tokens(ids).clone()
    for row, placed in enumerate(features):
        if placed is not None:
            positions, values = placed
            embeds[row, torch.tensor(positions)] = values.to(embeds.dtype)
    return embeds


@dataclass(frozen=True)
class ExpandedImages:
    """A chat example with its `<image>` tags expanded: ids and labels (the blocks out of the loss),
    the positions that take image features, and each image's pixels in order."""

    input_ids: list[int]
    labels: list[int]
    positions: list[int]
    pixels: list[Any]


def expand_image_tags(
    line: dict[str, Any],
    example: SupervisedExample,
    tag: int,
    block_of: Callable[[Image.Image], ImageBlock],
) -> ExpandedImages | None:
    """Each `<image>` tag left in the (possibly truncated) example replaced by its image's block,
    as the base's processor lays it out (`block_of`); None when no image is left."""
    kept = sum(1 for token in example.input_ids if token == tag)
    images = iter(images_of(line["messages"])[:kept])
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    pixels: list[Any] = []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if token != tag:
            ids.append(token)
            labels.append(label)
            continue
        image = next(images, None)
        if image is None:
            raise ValueError("an <image> tag without an image_url part")
        block, offsets, image_pixels = block_of(image)
        positions += [len(ids) + offset for offset in offsets]
        pixels.append(image_pixels)
        ids += block
        labels += [IGNORE] * len(block)
    return ExpandedImages(ids, labels, positions, pixels) if pixels else None
