"""Test images made with Pillow, as data URLs (NudeNet's wheel ships no sample image)."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw


def png_data_url(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def benign() -> Image.Image:
    """A white card with a black frame: NudeNet detects nothing in it."""
    image = Image.new("RGB", (320, 320), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((20, 20, 300, 300), outline=(0, 0, 0), width=5)
    return image


def yellow_disc() -> Image.Image:
    """A yellow disc on blue: NudeNet's detector really answers BUTTOCKS_EXPOSED at ~0.25 for it
    (a false positive, below the default threshold of 0.5): the test's stand-in for a positive."""
    image = Image.new("RGB", (320, 240), (30, 120, 200))
    ImageDraw.Draw(image).ellipse((100, 60, 220, 180), fill=(250, 200, 0))
    return image
