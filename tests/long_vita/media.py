"""Deterministic test images and video frames, shared by the tests and the vLLM driver process."""

from __future__ import annotations

import numpy as np
from PIL import Image


def picture(width: int, height: int, seed: int) -> Image.Image:
    """A colour gradient with noise: distinct per seed, smooth enough that resizing matters."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, 1, 3))
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.integers(-120, 120, (1, 1, 3))
    fall = np.linspace(0, 1, height)[:, None, None] * rng.integers(-120, 120, (1, 1, 3))
    pixels = base + ramp + fall + rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def frames(count: int, width: int, height: int, seed: int) -> np.ndarray:
    """(count, height, width, 3) uint8 frames, as vLLM's video loader hands them over."""
    return np.stack([np.asarray(picture(width, height, seed * 1000 + i)) for i in range(count)])
