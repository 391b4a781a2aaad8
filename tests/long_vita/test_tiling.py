"""The original's preprocessing, rewritten in PIL and numpy: grids, tiles, normalisation, tokens."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.long_vita.config import token_id
from engine.long_vita.tiling import (
    NEWLINE_ID,
    frame_indices,
    grid_for,
    image_token_ids,
    normalize,
    tile_image,
    video_frame_pixels,
    video_token_ids,
)
from tests.long_vita.media import picture


@pytest.mark.parametrize(
    ("size", "grid"),
    [
        ((448, 448), (1, 1)),
        ((896, 448), (2, 1)),
        ((448, 896), (1, 2)),
        ((500, 1400), (1, 3)),
        ((1344, 896), (3, 2)),
        ((5000, 100), (12, 1)),
        # 4:3 at 1600 x 1200: (4, 3) fits exactly and is within 12 tiles.
        ((1600, 1200), (4, 3)),
        # Ties on the ratio: 1:1 matches (1, 1), (2, 2) and (3, 3); a large image takes the
        # later grid (its area is over half of the grid's), a small one stays at one tile.
        ((2000, 2000), (3, 3)),
        ((300, 300), (1, 1)),
    ],
)
def test_grid_is_the_closest_ratio_with_the_originals_tie_break(
    size: tuple[int, int], grid: tuple[int, int]
) -> None:
    assert grid_for(*size) == grid


def test_a_grid_image_is_a_thumbnail_then_its_tiles_row_by_row() -> None:
    image = picture(896, 448, 0)
    tiling = tile_image(image)
    assert (tiling.cols, tiling.rows) == (2, 1)
    assert tiling.pixels.shape == (3, 3, 448, 448)
    assert tiling.pixels.dtype == np.float32
    np.testing.assert_array_equal(
        tiling.pixels[0], normalize(image.resize((448, 448), Image.Resampling.BICUBIC))
    )
    np.testing.assert_array_equal(tiling.pixels[2], normalize(image.crop((448, 0, 896, 448))))


def test_one_tile_has_no_thumbnail() -> None:
    assert tile_image(picture(448, 448, 0)).pixels.shape == (1, 3, 448, 448)


def test_normalisation_is_imagenets() -> None:
    pixels = normalize(Image.new("RGB", (448, 448), (255, 0, 124)))
    assert pixels.shape == (3, 448, 448)
    assert pixels[0, 0, 0] == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)
    assert pixels[1, 5, 5] == pytest.approx(-0.456 / 0.224, rel=1e-6)
    assert pixels[2, 9, 9] == pytest.approx((124 / 255 - 0.406) / 0.225, rel=1e-5)


def test_video_frames_are_padded_to_squares_with_the_mean_colour() -> None:
    frame = np.zeros((224, 448, 3), dtype=np.uint8)
    pixels = video_frame_pixels([frame])
    assert pixels.shape == (1, 3, 448, 448)
    # Top rows are padding: the mean colour, which normalises to about zero.
    assert np.abs(pixels[0, :, 0, :]).max() < 0.02
    assert pixels[0, 0, 224, 224] == pytest.approx(-0.485 / 0.229, rel=1e-5)


def test_frame_sampling_is_one_per_second_at_most() -> None:
    assert frame_indices(300, 30.0) == list(range(0, 300, 30))
    # Long videos: at most max_frames frames, spread over the whole video.
    many = frame_indices(100_000, 1.0, max_frames=8)
    assert len(many) == 8
    assert many[0] == 0
    assert many[-1] == int(7 * 100_000 / 9)


def test_token_layout_of_one_tile_a_grid_and_frames() -> None:
    assert image_token_ids(1, 1, 4) == [
        token_id("<img>"),
        *[token_id("<IMG_CONTEXT>")] * 4,
        token_id("</img>"),
    ]
    grid = image_token_ids(2, 2, 4)
    patch = [token_id("<patch>"), *[token_id("<PATCH_CONTEXT>")] * 4, token_id("</patch>")]
    assert grid == image_token_ids(1, 1, 4) + ([NEWLINE_ID, *patch, *patch] * 2)
    assert (
        video_token_ids(2, 4) == [token_id("<vid>"), *[token_id("<VID_CONTEXT>")] * 4, token_id("</vid>")] * 2
    )


def test_the_newline_is_qwens(long_vita_tokenizer: object) -> None:
    assert long_vita_tokenizer("\n").input_ids == [NEWLINE_ID]  # type: ignore[operator]
