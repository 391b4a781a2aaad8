"""Images: check what the bytes really are, refuse decompression bombs, fix orientation, fit the
model's pixel budget.

The size check reads only the header (Pillow opens lazily), so a small file that claims a huge
canvas is refused before a single pixel is decoded.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from adapters.errors import MediaError
from adapters.limits import Tally

# What decoders are tried at all: formats a browser or phone sends. Anything else is refused unread.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


@dataclass(frozen=True)
class ImageFacts:
    """What the safety filter is told about an image before any model sees it."""

    param: str
    format: str
    width: int
    height: int
    bytes: int
    claimed_mime: str | None


def open_image(
    data: bytes, param: str, tally: Tally, claimed_mime: str | None = None, *, count: bool = True
) -> tuple[Image.Image, ImageFacts]:
    """The decoded image (upright, RGB, RGBA or L) and its facts; a MediaError for anything unusable.
    `count=False` checks its size without counting it among the request's images (a scanned page)."""
    try:
        opened = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = opened.size
        if count:
            tally.add_image(param, width * height)
        else:
            tally.check_pixels(param, width * height)
        opened.load()
    except MediaError:
        raise
    except Image.DecompressionBombError:
        raise MediaError(
            param, "This image declares more pixels than may be decoded.", code="image_too_large"
        ) from None
    except UnidentifiedImageError:
        raise MediaError(
            param, f"This is not an image in a supported format ({', '.join(FORMATS)}).", code="invalid_image"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise MediaError(
            param, f"This image is corrupt or truncated ({exc}).", code="invalid_image"
        ) from None
    facts = ImageFacts(param, str(opened.format), width, height, len(data), claimed_mime)
    image: Image.Image = ImageOps.exif_transpose(opened) or opened
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    return image, facts


def fit_budget(image: Image.Image, pixel_budget: int) -> Image.Image:
    """The image scaled down (never up) so that width x height fits the model's pixel budget."""
    width, height = image.size
    if width * height <= pixel_budget:
        return image
    scale = math.sqrt(pixel_budget / (width * height))
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def to_data_url(image: Image.Image) -> str:
    """A PNG data URL of the normalised image, for a model that takes images itself."""
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
