"""Long-VITA's multimodal processor for vLLM: the original's tiling, no torchvision, no HF processor.

vLLM tokenizes the prompt itself and calls `_call_hf_processor` with the images and videos only;
here that call tiles each image and normalises each frame (`engine.long_vita.tiling`, PIL and
numpy). The prompt updates then replace each `<image>` tag with the image's tokens (the
thumbnail's `<img>` block, then a newline and `<patch>` blocks per row of tiles) and each
`<video>` tag with one `<vid>` block per frame; only the context tokens take features
(`is_embed`), so the markers and newlines stay text. Because the placement is vLLM's own, prefix
caching (items hashed by content) and chunked prefill (placeholder ranges) work as for vLLM's models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import ImageProcessorItems, MultiModalDataItems, VideoProcessorItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)

from engine.long_vita.config import IMAGE_TAG, IMG_CONTEXT, PATCH_CONTEXT, VID_CONTEXT, VIDEO_TAG, token_id
from engine.long_vita.tiling import (
    MAX_TILES,
    TILE_SIZE,
    grid_for,
    image_token_ids,
    tile_image,
    video_frame_pixels,
    video_token_ids,
)

__all__ = ["LongVitaDummyInputs", "LongVitaProcessingInfo", "LongVitaProcessor"]

_CONTEXT_IDS = (token_id(IMG_CONTEXT), token_id(PATCH_CONTEXT), token_id(VID_CONTEXT))
DEFAULT_VIDEO_FRAMES = 32
"""What vLLM's video loader hands over at most unless `--media-io-kwargs` sets `num_frames`."""


def _tiles(cols: int, rows: int) -> int:
    return 1 if cols * rows == 1 else cols * rows + 1


class LongVitaProcessingInfo(BaseProcessingInfo):
    """What the processor needs to know: tokens per tile, the tile grid of an image size."""

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None, "video": None}

    @property
    def tile_tokens(self) -> int:
        return int(self.get_hf_config().tile_tokens)

    def grid(self, width: int, height: int) -> tuple[int, int]:
        return grid_for(width, height, size=TILE_SIZE, max_tiles=MAX_TILES)

    @property
    def video_frames(self) -> int:
        """The most frames a video brings: the loader's `num_frames` (32 unless configured)."""
        configured = self.ctx.get_mm_config().media_io_kwargs.get("video", {}).get("num_frames", -1)
        return int(configured) if int(configured) > 0 else DEFAULT_VIDEO_FRAMES

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        # The largest image: 12 tiles in one column (a newline per row), plus the thumbnail.
        per_tile = self.tile_tokens + 2
        return {"image": 13 * per_tile + 12, "video": self.video_frames * per_tile}


class LongVitaDummyInputs(BaseDummyInputsBuilder[LongVitaProcessingInfo]):
    """Profiling inputs: the largest image (a 1 x 12 grid: 13 tiles and 12 newlines) and a video
    of as many frames as vLLM's loader gives."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return IMAGE_TAG * mm_counts.get("image", 0) + VIDEO_TAG * mm_counts.get("video", 0)

    def get_dummy_mm_data(
        self, seq_len: int, mm_counts: Mapping[str, int], mm_options: MultiModalDummyOptions
    ) -> dict[str, Any]:
        return {
            "image": self._get_dummy_images(
                width=TILE_SIZE, height=TILE_SIZE * 12, num_images=mm_counts.get("image", 0)
            ),
            "video": self._get_dummy_videos(
                width=TILE_SIZE,
                height=TILE_SIZE,
                num_frames=self.info.video_frames,
                num_videos=mm_counts.get("video", 0),
            ),
        }


def _frames(video: Any) -> Sequence[Image.Image | np.ndarray] | np.ndarray:
    """A video item's frames: vLLM hands (frames, metadata) or the frames alone."""
    frames = video[0] if isinstance(video, tuple) else video
    return frames if isinstance(frames, list) else np.asarray(frames)


class LongVitaProcessor(BaseMultiModalProcessor[LongVitaProcessingInfo]):
    """Pixels from the original's preprocessing; tokens placed as its `get_external_inputs` does."""

    def _call_hf_processor(
        self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]
    ) -> BatchFeature:
        out: dict[str, Any] = {}
        images = hf_data.get("images") or []
        if images:
            tilings = [tile_image(image) for image in images]  # type: ignore[attr-defined]
            out["pixel_values_flat"] = torch.from_numpy(np.concatenate([t.pixels for t in tilings]))
            out["image_num_tiles"] = torch.tensor([len(t.pixels) for t in tilings])
        videos = hf_data.get("videos") or []
        if videos:
            frames = [video_frame_pixels(_frames(v)) for v in videos]  # type: ignore[attr-defined]
            out["pixel_values_videos"] = torch.from_numpy(np.concatenate(frames))
            out["video_num_frames"] = torch.tensor([len(f) for f in frames])
        return BatchFeature(out)

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        image_tiles = hf_inputs.get("image_num_tiles", torch.empty(0))
        video_frames = hf_inputs.get("video_num_frames", torch.empty(0))
        return {
            "pixel_values_flat": MultiModalFieldConfig.flat_from_sizes("image", image_tiles),
            "image_num_tiles": MultiModalFieldConfig.batched("image", keep_on_cpu=True),
            "pixel_values_videos": MultiModalFieldConfig.flat_from_sizes("video", video_frames),
            "video_num_frames": MultiModalFieldConfig.batched("video", keep_on_cpu=True),
        }

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        tile_tokens = self.info.tile_tokens

        def image_tokens(item_idx: int) -> PromptUpdateDetails:
            images = mm_items.get_items("image", ImageProcessorItems)
            size = images.get_image_size(item_idx)
            cols, rows = self.info.grid(size.width, size.height)
            return PromptUpdateDetails.select_token_ids(
                image_token_ids(cols, rows, tile_tokens), list(_CONTEXT_IDS)
            )

        def video_tokens(item_idx: int) -> PromptUpdateDetails:
            videos = mm_items.get_items("video", VideoProcessorItems)
            frames = videos.get_num_frames(item_idx)
            return PromptUpdateDetails.select_token_ids(
                video_token_ids(frames, tile_tokens), list(_CONTEXT_IDS)
            )

        return [
            PromptReplacement(modality="image", target=[token_id(IMAGE_TAG)], replacement=image_tokens),
            PromptReplacement(modality="video", target=[token_id(VIDEO_TAG)], replacement=video_tokens),
        ]
