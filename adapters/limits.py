"""Per-request caps on media, and the tally that enforces them while parts are decoded.

Each cap is checked as early as the cheapest fact allows (a part count before decoding, an image's
header size before its pixels, a PDF's page count before its text), so an oversized request is
refused before it costs anything.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from adapters.errors import MediaError


@dataclass(frozen=True)
class MediaLimits:
    max_parts: int = 16
    max_images: int = 8
    max_image_pixels: int = 40_000_000
    max_total_pixels: int = 80_000_000
    image_pixel_budget: int = 1_048_576
    max_part_bytes: int = 16 * 1024 * 1024
    max_total_bytes: int = 32 * 1024 * 1024
    max_pages: int = 50
    max_video_seconds: float = 60.0
    video_fps: float = 1.0
    max_video_frames: int = 32
    # OCR reads an image (or a scanned page, or a frame) scaled down to at most this many pixels:
    # Tesseract's time grows with the pixels, and text stays legible well below a full-page scan.
    ocr_pixel_budget: int = 4_194_304
    # The longest one request's media may take to prepare, from its first fetch to its last OCR call.
    deadline_s: float = 120.0
    # Frames decoded per second of allowed video, at most: a video without a declared length (or
    # without timestamps) is stopped after max_video_seconds x this many frames, whatever it claims.
    max_decoded_fps: float = 120.0


@dataclass(frozen=True)
class Stop:
    """When one request's media work must end: its deadline (wall clock, which the gateway and its
    worker processes share) or the gateway creating `flag` (a file) because the client left. Checked
    between steps (a page, an image, a frame); a step itself is bounded (OCR by its timeout)."""

    deadline: float
    seconds: float
    flag: str | None = None

    @classmethod
    def after(cls, seconds: float, flag: str | None = None) -> Stop:
        return cls(time.time() + seconds, seconds, flag)

    def left(self) -> float:
        return self.deadline - time.time()

    def check(self, param: str | None) -> None:
        if self.flag is not None and os.path.exists(self.flag):
            raise MediaError(param, "The request was abandoned.", code="cancelled")
        if self.left() <= 0:
            raise deadline_error(param, self.seconds)


def deadline_error(param: str | None, seconds: float) -> MediaError:
    return MediaError(
        param,
        f"Preparing this request's media took longer than {seconds:g} s; send fewer or smaller parts.",
        code="preprocessing_timeout",
    )


@dataclass
class Tally:
    """What one request's media used so far; `usage()` is what the response reports."""

    limits: MediaLimits
    images: int = 0
    image_pixels: int = 0
    pages: int = 0
    documents: int = 0
    videos: int = 0
    video_seconds: float = 0.0
    video_frames: int = 0
    audios: int = 0
    audio_seconds: float = 0.0
    bytes: int = 0
    derived_chars: int = 0
    modes: set[str] = field(default_factory=set)
    stop: Stop | None = None

    def check_time(self, param: str | None) -> None:
        """Raise when the request's deadline passed or its client left (a no-op without a Stop)."""
        if self.stop is not None:
            self.stop.check(param)

    def time_left(self, cap: float) -> float:
        """How long the next step may take: `cap`, or less when the deadline is nearer."""
        return cap if self.stop is None else max(0.1, min(cap, self.stop.left()))

    def add_bytes(self, param: str, size: int) -> None:
        if size > self.limits.max_part_bytes:
            raise MediaError(
                param,
                f"This part is {size} bytes; a part may be at most {self.limits.max_part_bytes} bytes.",
                code="media_too_large",
                status=413,
            )
        if self.bytes + size > self.limits.max_total_bytes:
            raise MediaError(
                param,
                f"The media in this request add up to more than {self.limits.max_total_bytes} bytes.",
                code="media_too_large",
                status=413,
            )
        self.bytes += size

    def check_pixels(self, param: str, pixels: int) -> None:
        if pixels > self.limits.max_image_pixels:
            raise MediaError(
                param,
                f"This image has {pixels} pixels; an image may have at most {self.limits.max_image_pixels}.",
                code="image_too_large",
            )

    def add_image(self, param: str, pixels: int) -> None:
        self.check_pixels(param, pixels)
        if self.images + 1 > self.limits.max_images:
            raise MediaError(
                param,
                f"A request may hold at most {self.limits.max_images} images (an image a scanned "
                "document page shows counts each time it appears).",
                code="too_many_images",
            )
        if pixels > self.limits.max_image_pixels:
            raise MediaError(
                param,
                f"This image has {pixels} pixels; an image may have at most {self.limits.max_image_pixels}.",
                code="image_too_large",
            )
        if self.image_pixels + pixels > self.limits.max_total_pixels:
            raise MediaError(
                param,
                f"The images in this request have more than {self.limits.max_total_pixels} pixels in all.",
                code="image_too_large",
            )
        self.images += 1
        self.image_pixels += pixels

    def add_pages(self, param: str, pages: int) -> None:
        if self.pages + pages > self.limits.max_pages:
            raise MediaError(
                param,
                f"This document has {pages} pages; a request may hold at most {self.limits.max_pages} "
                f"pages in all ({self.pages} already used).",
                code="too_many_pages",
            )
        self.pages += pages
        self.documents += 1

    def add_video(self, param: str, seconds: float) -> None:
        if self.video_seconds + seconds > self.limits.max_video_seconds:
            raise MediaError(
                param,
                f"This video lasts {seconds:.1f} s; a request may hold at most "
                f"{self.limits.max_video_seconds:g} s of video in all.",
                code="video_too_long",
            )
        self.videos += 1
        self.video_seconds += seconds

    def absorb(self, other: Tally) -> None:
        """Add what another part of the same request used (audio is transcribed apart from the rest)."""
        for name in ("images", "image_pixels", "pages", "documents", "videos", "video_frames", "audios"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.video_seconds += other.video_seconds
        self.audio_seconds += other.audio_seconds
        self.bytes += other.bytes
        self.derived_chars += other.derived_chars
        self.modes |= other.modes

    def usage(self) -> dict[str, object]:
        """The `usage.tantra_media` object of the response."""
        return {
            "images": self.images,
            "image_pixels": self.image_pixels,
            "documents": self.documents,
            "pages": self.pages,
            "videos": self.videos,
            "video_seconds": round(self.video_seconds, 3),
            "video_frames": self.video_frames,
            "audios": self.audios,
            "audio_seconds": round(self.audio_seconds, 3),
            "bytes": self.bytes,
            "derived_text_chars": self.derived_chars,
            "derived": sorted(self.modes),
        }
