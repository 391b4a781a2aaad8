"""The media settings (`TANTRA_MEDIA_*`): images, documents and video in chat content parts
(adapters/, docs/adapters.md).

A mixin of `Settings` (gateway/settings/schema.py), kept apart so the schema stays readable; the
fields are read, named and reloaded exactly as the schema's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, IPvAnyNetwork, field_validator

from adapters.fetch import UrlPolicy
from adapters.parts import Modality


class MediaFields(BaseModel):
    """How chat media parts are fetched, limited, checked and turned into what a model takes."""

    media_enabled: bool = Field(
        True,
        description="Process media parts; false forwards them to the engine untouched (but never "
        "an http(s) URL, nor a part type the gateway does not check).",
    )
    media_default_accepts: list[Modality] = Field(
        default_factory=lambda: list[Modality](["text"]),
        description="What a model takes itself unless `models.<name>.accepts` says otherwise.",
    )
    media_url_allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts (`img.example.com`, `img.example.com:8443`, `*.example.com`) or URL prefixes "
        "(`https://cdn.example.com/public/`) media may be fetched from, compared by parsed scheme, "
        "host, port and path segments; empty: only data URLs.",
    )
    # SSRF guard (issue 16, point 5): an allowed host must still resolve to public addresses only;
    # a loopback, private, link-local or metadata address is fetched from only inside these CIDRs.
    media_url_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="CIDRs (`10.1.2.0/24`) media URLs may resolve to although not public; empty: "
        "public addresses only.",
    )
    media_fetch_timeout_s: float = Field(10.0, gt=0, description="Longest fetch of one media URL.")
    media_max_parts: int = Field(16, ge=0, description="Media parts per request, at most.")
    media_max_images: int = Field(8, ge=0, description="Images per request, at most.")
    media_max_image_pixels: int = Field(
        40_000_000, gt=0, description="Pixels of one image (or video frame) before it is refused as a bomb."
    )
    media_max_total_pixels: int = Field(80_000_000, gt=0, description="Image pixels per request, at most.")
    media_image_pixel_budget: int = Field(
        1_048_576, gt=0, description="Images are scaled down to at most this many pixels for the model."
    )
    media_max_part_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Decoded bytes of one media part; larger gets 413."
    )
    media_max_total_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Decoded media bytes per request; more gets 413."
    )
    media_max_pages: int = Field(50, ge=0, description="Document pages per request, at most.")
    media_max_video_seconds: float = Field(60.0, ge=0, description="Seconds of video per request, at most.")
    media_video_fps: float = Field(1.0, gt=0, description="Video frames sampled per second of video.")
    media_max_video_frames: int = Field(32, ge=1, description="Frames sampled from one video, at most.")
    media_ocr_enabled: bool = Field(
        True, description="Derive text from images for text-only models (Tesseract); false: 400 instead."
    )
    media_ocr_lang: str = Field("eng", description="Tesseract's language(s), e.g. `eng+deu`.")
    media_ocr_timeout_s: float = Field(30.0, gt=0, description="Longest OCR of one image or frame.")
    # Tesseract's time grows with the pixels it reads; a scan is legible at ~4 MP (A4 at ~200 dpi).
    media_ocr_max_pixels: int = Field(
        4_194_304, gt=0, description="Images, scanned pages and frames are scaled to at most this for OCR."
    )
    # One request's whole media work (fetches, queue, decoding, OCR, transcription) has one deadline,
    # so no request holds a worker for longer, however its parts were crafted.
    media_deadline_s: float = Field(
        120.0,
        gt=0,
        description="Longest preparation of one request's media; over it: 400 preprocessing_timeout.",
    )
    media_workers: int = Field(
        2, ge=1, description="Requests whose media are processed at once (worker processes or threads)."
    )
    media_executor: Literal["process", "thread"] = Field(
        "process",
        description="Where media work runs: worker processes (never competes with the event loop for "
        "the GIL) or threads of the gateway's process.",
    )
    media_queue_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for a free worker before 503 `preprocessing_busy`."
    )
    media_image_filter: str | None = Field(
        None,
        description="Import path `package.module:factory` of an image classifier run after the "
        "size/type policy; the factory returns `(facts, image) -> Verdict`.",
    )
    media_image_formats: list[str] = Field(
        default_factory=lambda: ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"],
        description="Image formats the safety policy lets through.",
    )

    @field_validator("media_url_allowlist")
    @classmethod
    def _parsed_allowlist(cls, entries: list[str]) -> list[str]:
        UrlPolicy(entries)  # an entry that does not parse fails at startup, not on a request
        return entries
