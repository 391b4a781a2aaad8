"""The `long_vita` configuration and tokens, as VITA-MLLM/Long-VITA publishes them.

`LongVITAConfig` is the original's: a `Qwen2Config` whose extra `visual` key holds the
InternViT-300M-448px config as a plain dict (`config_14B.json`). The tokens are the ones the
original's `update_tokenizer` adds after Qwen2.5's own, in its order, so they land on the same
ids as in the published tokenizer (from 151665 on).
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2Config

__all__ = [
    "ADDED_TOKENS",
    "FIRST_ADDED_ID",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_TYPE",
    "LongVITAConfig",
    "token_id",
]

MODEL_TYPE = "long_vita"

IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
VID_START, VID_END, VID_CONTEXT = "<vid>", "</vid>", "<VID_CONTEXT>"
PATCH_START, PATCH_END, PATCH_CONTEXT = "<patch>", "</patch>", "<PATCH_CONTEXT>"
IMAGE_TAG, VIDEO_TAG = "<image>", "<video>"

ADDED_TOKENS: tuple[str, ...] = (
    IMG_START,
    IMG_END,
    IMG_CONTEXT,
    VID_START,
    VID_END,
    VID_CONTEXT,
    PATCH_START,
    PATCH_END,
    PATCH_CONTEXT,
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    IMAGE_TAG,
    VIDEO_TAG,
)
"""`long_vita/tokenizer.py: update_tokenizer`'s list, in its order (all special)."""

FIRST_ADDED_ID = 151665
"""Qwen2.5's 22 special tokens end at 151664."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The original's `normalize_type="imagenet"`, which its HF inference uses."""


def token_id(token: str) -> int:
    """The id the published tokenizer gives one of `ADDED_TOKENS`."""
    return FIRST_ADDED_ID + ADDED_TOKENS.index(token)


class LongVITAConfig(Qwen2Config):
    """Qwen2.5's config plus `visual` (InternViT's config, a dict); nothing else differs."""

    model_type = MODEL_TYPE

    def __init__(self, visual: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.visual = dict(visual or {})
        super().__init__(**kwargs)

    @property
    def image_size(self) -> int:
        return int(self.visual.get("image_size", 448))

    @property
    def tile_tokens(self) -> int:
        """Context tokens per 448 px tile: patches per side, halved by the 2 x 2 pixel shuffle, squared."""
        side = self.image_size // int(self.visual.get("patch_size", 14))
        return (side // 2) ** 2
