"""One request's media turned into what its model takes: run in a worker, never on the event loop.

For each part the plan says `native` (the model takes it: an image is normalised and re-encoded
as a PNG data URL, a video is length-checked and passed on, as a data URL if it was fetched) or
`derive` (text for a text-only model: OCR of images, a document's text with page markers, OCR of
sampled video frames). The parts are replaced in place; everything else in the request stays as
the client sent it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from PIL import Image

from adapters.documents import document_text
from adapters.errors import MediaError
from adapters.images import ImageFacts, fit_budget, open_image, to_data_url
from adapters.limits import MediaLimits, Stop, Tally
from adapters.ocr import Ocr
from adapters.parts import MediaPart, forwarded
from adapters.policy import ImageFilter
from adapters.sources import Blob, decode_base64, decode_data_url, is_data_url
from adapters.video import sample_frames, video_text

_log = structlog.stdlib.get_logger("tantra.adapters")


@dataclass(frozen=True)
class Job:
    """One part to process: its plan, and its bytes when they were fetched from a URL."""

    part: MediaPart
    plan: Literal["native", "derive"]
    fetched: Blob | None = None


@dataclass
class Preprocessed:
    """Each job's replacement part, in job order, and what the request's media used."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    tally: Tally | None = None


@dataclass
class Preprocessor:
    limits: MediaLimits
    ocr: Ocr
    image_filter: ImageFilter

    def run(self, jobs: list[Job], stop: Stop | None = None) -> Preprocessed:
        """Each job's replacement; `stop` ends the work early (deadline passed, client gone)."""
        tally = Tally(self.limits, stop=stop)
        outcome = Preprocessed(tally=tally)
        numbers: Counter[str] = Counter()
        for job in jobs:
            tally.check_time(job.part.param)
            numbers[job.part.kind] += 1
            try:
                outcome.parts.append(self._one(job, numbers[job.part.kind], tally))
            except MediaError:
                raise
            except Exception as exc:
                # A decoder failing in a way nobody foresaw is still the client's file, not a
                # gateway fault: the request gets a 400 naming the part, the worker lives on.
                _log.warning("media_part_failed", param=job.part.param, error=repr(exc)[:500])
                raise MediaError(
                    job.part.param,
                    f"This part could not be processed ({type(exc).__name__}).",
                    code="invalid_content_part",
                ) from exc
        return outcome

    def _one(self, job: Job, number: int, tally: Tally) -> dict[str, Any]:
        part = job.part
        if job.fetched is not None:
            tally.add_bytes(part.param, len(job.fetched.data))
        if part.kind == "image":
            return self._image(job, number, tally)
        if part.kind == "document":
            blob = job.fetched or self._file_blob(part, tally)
            text = document_text(blob.data, blob.mime, blob.name, part.param, tally, self.ocr)
            return self._text(text, tally)
        if part.kind == "video":
            return self._video(job, number, tally)
        raise MediaError(part.param, f"{part.kind} parts cannot be handled.", code="unsupported_content_part")

    def _image(self, job: Job, number: int, tally: Tally) -> dict[str, Any]:
        part = job.part
        blob = job.fetched or self._url_blob(part, tally)
        image, facts = open_image(blob.data, part.param, tally, blob.mime)
        self.image_filter.check(facts, image)
        if job.plan == "native":
            tally.modes.add("image")
            source = dict(part.part["image_url"]) if isinstance(part.part["image_url"], dict) else {}
            source["url"] = to_data_url(fit_budget(image, self.limits.image_pixel_budget))
            return {**part.part, "type": "image_url", "image_url": source}  # `input_image` too
        text = self.ocr.read(
            fit_budget(image, self.limits.ocr_pixel_budget), part.param, tally.time_left(self.ocr.timeout_s)
        )
        tally.modes.add("ocr")
        label = f"image {number}"
        if not text:
            return self._text(f"[{label}: no text found]", tally)
        return self._text(f"[{label}, text read by OCR]\n{text}\n[end of {label}]", tally)

    def _video(self, job: Job, number: int, tally: Tally) -> dict[str, Any]:
        part = job.part
        blob = job.fetched or self._url_blob(part, tally)
        if job.plan == "native":
            # Sampling checks the length and decodability; the model gets the part as it was sent,
            # or the bytes checked here when they were fetched (the engine never fetches a URL).
            _, frames = sample_frames(blob.data, part.param, tally, self.limits.image_pixel_budget)
            for frame in frames:
                self._check_frame(part, frame.image)
            tally.modes.add("video")
            return forwarded(part, job.fetched)
        text = video_text(
            blob.data, part.param, tally, self.ocr, f"video {number}", self.limits.image_pixel_budget
        )
        return self._text(text, tally)

    def _check_frame(self, part: MediaPart, image: Image.Image) -> None:
        width, height = image.size
        self.image_filter.check(ImageFacts(part.param, "PNG", width, height, 0, "video/frame"), image)

    def _text(self, text: str, tally: Tally) -> dict[str, Any]:
        tally.derived_chars += len(text)
        return {"type": "text", "text": text}

    def _url_blob(self, part: MediaPart, tally: Tally) -> Blob:
        url = part.url
        if url is None:
            raise MediaError(part.param, "This part has no `url`.")
        if not is_data_url(url):
            raise MediaError(
                part.param, "Only `data:` and allowed http(s) URLs are accepted.", code="url_not_allowed"
            )
        return decode_data_url(url, part.param, tally)

    def _file_blob(self, part: MediaPart, tally: Tally) -> Blob:
        file = part.part.get("file")
        if not isinstance(file, dict):
            raise MediaError(part.param, "A `file` part needs a `file` object with `file_data`.")
        name = file.get("filename") if isinstance(file.get("filename"), str) else None
        data = file.get("file_data")
        if not isinstance(data, str):
            if "file_id" in file:
                raise MediaError(
                    part.param + ".file_id",
                    "Uploaded file ids are not supported here; send the file inline as `file_data`.",
                    code="unsupported_content_part",
                )
            raise MediaError(part.param, "A `file` part needs `file_data` (a base64 data URL).")
        if is_data_url(data):
            blob = decode_data_url(data, part.param, tally)
            return Blob(blob.data, blob.mime, name)
        tally.add_bytes(part.param, len(data) * 3 // 4)
        return Blob(decode_base64(data, part.param), None, name)
