"""Long-VITA's preprocessing in PIL and numpy (no torchvision), and the prompt tokens it implies.

Written from the original's `long_vita/data/processor/image_processor.py` and the HF inference's
`get_external_inputs` (VLMEvalKit/long_vita_hf.py), with the settings its training and inference
scripts pass: `process_type="dynamic"`, `normalize_type="imagenet"`, tiles of 448 px, 1 to 12
tiles per image, video at most 1 frame per second and 4096 frames.

An image becomes a grid of `cols x rows` tiles, the grid whose aspect ratio is closest to the
image's. One tile: the image squeezed to 448 x 448, its tokens `<img>` + 256 `<IMG_CONTEXT>` +
`</img>`. Several: a 448 x 448 thumbnail of the whole image first (as one tile would be), then
the image resized to the grid and cut row by row; the tokens are the thumbnail's `<img>` block,
then per row a newline and per tile `<patch>` + 256 `<PATCH_CONTEXT>` + `</patch>`. A video frame is
padded to a square with the mean colour, resized, and takes `<vid>` + 256 `<VID_CONTEXT>` + `</vid>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.long_vita.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    PATCH_CONTEXT,
    PATCH_END,
    PATCH_START,
    VID_CONTEXT,
    VID_END,
    VID_START,
    token_id,
)

__all__ = [
    "MAX_FPS",
    "MAX_FRAMES",
    "MAX_TILES",
    "NEWLINE_ID",
    "TILE_SIZE",
    "Tiling",
    "frame_indices",
    "grid_for",
    "image_token_ids",
    "normalize",
    "tile_image",
    "video_frame_pixels",
    "video_token_ids",
]

TILE_SIZE = 448
MIN_TILES = 1
MAX_TILES = 12
MAX_FPS = 1.0
MAX_FRAMES = 4096
NEWLINE_ID = 198
"""Qwen2.5's id of "\\n", which the original puts before each row of tiles."""


@dataclass(frozen=True)
class Tiling:
    """One image's tiles: `pixels` is (tiles, 3, size, size) float32, the thumbnail first when
    there is a grid; `cols x rows` is the grid (1 x 1: a single tile, no thumbnail)."""

    pixels: np.ndarray
    cols: int
    rows: int


def _target_ratios(min_num: int, max_num: int) -> list[tuple[int, int]]:
    ratios = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    # Sorted by area only, as the original does: equal areas keep the set's iteration order, which
    # CPython fixes for tuples of small ints, so ties resolve as they do in the original.
    return sorted(ratios, key=lambda r: r[0] * r[1])


def grid_for(
    width: int, height: int, *, size: int = TILE_SIZE, max_tiles: int = MAX_TILES
) -> tuple[int, int]:
    """The original's `find_closest_aspect_ratio`: (cols, rows) whose ratio is nearest the
    image's; on a tie the later (larger) grid wins when the image has over half its pixels."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    area = width * height
    for ratio in _target_ratios(MIN_TILES, max_tiles):
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff, best = diff, ratio
        elif diff == best_diff and area > 0.5 * size * size * ratio[0] * ratio[1]:
            best = ratio
    return best


def normalize(image: Image.Image, size: int = TILE_SIZE) -> np.ndarray:
    """The original's `process_images` for one square image: bicubic to size x size, /255,
    ImageNet mean and std, channels first; float32 throughout as the original's numpy is."""
    if image.size != (size, size):
        image = image.resize((size, size), resample=Image.Resampling.BICUBIC)
    # `x * 1.0 / 255.0` in float32, as written in the original (a product with 1/255 differs in the last bit).
    array: np.ndarray = np.asarray(image, dtype=np.float32) * 1.0 / 255.0
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def tile_image(image: Image.Image, *, size: int = TILE_SIZE, max_tiles: int = MAX_TILES) -> Tiling:
    """`dynamic_preprocess(..., use_thumbnail=True)` then `process_images`, for one image."""
    image = image.convert("RGB")
    cols, rows = grid_for(*image.size, size=size, max_tiles=max_tiles)
    # PIL's default filter for RGB is bicubic, which the original's `resize` calls rely on.
    resized = image.resize((size * cols, size * rows), resample=Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
        for r in range(rows)
        for c in range(cols)
    ]
    if len(tiles) > 1:
        tiles.insert(0, image.resize((size, size), resample=Image.Resampling.BICUBIC))
    return Tiling(np.stack([normalize(tile, size) for tile in tiles]), cols, rows)


def _expand_to_square(image: Image.Image) -> Image.Image:
    """The original's `expand2square`, with the mean colour as background."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    background = tuple(int(x * 255) for x in IMAGENET_MEAN)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def video_frame_pixels(
    frames: Sequence[Image.Image | np.ndarray] | np.ndarray, size: int = TILE_SIZE
) -> np.ndarray:
    """(frames, 3, size, size): each frame padded to a square, resized and normalised."""
    images = [
        f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames
    ]
    return np.stack([normalize(_expand_to_square(im.convert("RGB")), size) for im in images])


def frame_indices(
    total: int, fps: float, *, max_frames: int = MAX_FRAMES, max_fps: float = MAX_FPS
) -> list[int]:
    """The original's `get_video_frames` sampling: a step of at least one frame per 1/max_fps s
    and at least total / (max_frames + 1), frames `int(i * step)` from 0."""
    step = max(fps / max_fps, total / (max_frames + 1))
    return [i for i in (int(n * step) for n in range(max_frames)) if i < total]


def image_token_ids(cols: int, rows: int, tile_tokens: int) -> list[int]:
    """One image's prompt tokens, in the original's order (the thumbnail's block, then the rows)."""
    ids = [token_id(IMG_START), *[token_id(IMG_CONTEXT)] * tile_tokens, token_id(IMG_END)]
    if cols * rows > 1:
        for _ in range(rows):
            ids.append(NEWLINE_ID)
            for _ in range(cols):
                ids += [token_id(PATCH_START), *[token_id(PATCH_CONTEXT)] * tile_tokens, token_id(PATCH_END)]
    return ids


def video_token_ids(frames: int, tile_tokens: int) -> list[int]:
    """A video's prompt tokens: one `<vid>` block per frame, nothing between frames."""
    return [token_id(VID_START), *[token_id(VID_CONTEXT)] * tile_tokens, token_id(VID_END)] * frames
