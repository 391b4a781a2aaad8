"""Text in images, by Tesseract (Debian's `tesseract-ocr`), for models that read text only.

pytesseract runs the `tesseract` binary as a subprocess, so OCR releases the GIL and a stuck page
is cut off by `timeout_s` instead of holding a worker forever.
"""

from __future__ import annotations

import re
import shutil

from PIL import Image

from adapters.errors import MediaError

_BLANK_LINES = re.compile(r"\n\s*\n+")


class Ocr:
    def __init__(self, *, lang: str = "eng", timeout_s: float = 30.0, binary: str | None = None) -> None:
        self.lang = lang
        self.timeout_s = timeout_s
        self.binary = binary or shutil.which("tesseract")

    @property
    def available(self) -> bool:
        return self.binary is not None

    def read(self, image: Image.Image, param: str, timeout_s: float | None = None) -> str:
        """The image's text with blank lines folded, or "" when it has none. `timeout_s` shortens
        the configured timeout (a request's deadline being nearer)."""
        if self.binary is None:
            raise MediaError(
                param,
                "This model reads text only, and text cannot be derived from images on this gateway "
                "(Tesseract is not installed).",
                code="unsupported_content_part",
            )
        import pytesseract  # here: half a second of the gateway's start otherwise

        pytesseract.pytesseract.tesseract_cmd = self.binary
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        timeout = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        try:
            text = pytesseract.image_to_string(image, lang=self.lang, timeout=timeout)
        except RuntimeError:  # pytesseract's timeout
            raise MediaError(
                param,
                f"Reading the text of this image took longer than {timeout:g} s.",
                code="ocr_timeout",
            ) from None
        except pytesseract.TesseractError as exc:
            raise MediaError(param, f"Text could not be read from this image ({exc.message}).") from None
        return _BLANK_LINES.sub("\n", str(text)).strip()
