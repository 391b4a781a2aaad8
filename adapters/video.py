"""Video: its length checked before decoding, then frames sampled at a fixed rate (PyAV).

A text-only model gets the sampled frames' OCR with their times; a model that takes video gets
the part itself, once its length is known to be within the limits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
from PIL import Image

from adapters.errors import MediaError
from adapters.images import fit_budget
from adapters.limits import Tally
from adapters.ocr import Ocr


@dataclass(frozen=True)
class Frame:
    seconds: float
    image: Image.Image


def _open(data: bytes, param: str) -> av.container.InputContainer:
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise MediaError(
            param, f"This is not a video that can be decoded ({exc}).", code="invalid_video"
        ) from None
    if not container.streams.video:
        container.close()
        raise MediaError(param, "This file has no video stream.", code="invalid_video")
    return container


def video_seconds(data: bytes, param: str) -> float:
    """The video's length from its container, without decoding a frame (0.0 when not declared)."""
    container = _open(data, param)
    try:
        return _declared_seconds(container)
    finally:
        container.close()


def _declared_seconds(container: av.container.InputContainer) -> float:
    stream = container.streams.video[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def sample_frames(data: bytes, param: str, tally: Tally, pixel_budget: int) -> tuple[float, list[Frame]]:
    """(length in seconds, frames every 1/fps seconds, at most `max_video_frames`, each scaled to
    `pixel_budget`). The declared length is counted before decoding; a video that declares none is
    stopped as soon as it runs past the limit."""
    limits = tally.limits
    container = _open(data, param)
    try:
        declared = _declared_seconds(container)
        stream = container.streams.video[0]
        tally.check_pixels(param, stream.codec_context.width * stream.codec_context.height)
        budget = limits.max_video_seconds - tally.video_seconds
        if declared > budget:
            tally.add_video(param, declared)  # raises, naming the limit
        step = 1.0 / limits.video_fps
        next_at, last = 0.0, 0.0
        frames: list[Frame] = []
        for frame in container.decode(stream):
            at = float(frame.time) if frame.time is not None else last
            last = max(last, at)
            if at > budget:
                tally.add_video(param, at)  # raises
            if len(frames) >= limits.max_video_frames:
                if declared > 0:
                    break
                continue
            if at + 1e-6 >= next_at:
                frames.append(Frame(at, fit_budget(frame.to_image(), pixel_budget)))
                next_at = at + step
    except av.FFmpegError as exc:
        raise MediaError(param, f"This video is corrupt ({exc}).", code="invalid_video") from None
    finally:
        container.close()
    seconds = max(declared, last)
    tally.add_video(param, seconds)
    tally.video_frames += len(frames)
    return seconds, frames


def video_text(data: bytes, param: str, tally: Tally, ocr: Ocr, label: str, pixel_budget: int) -> str:
    """The sampled frames' text with their times; a frame that repeats the last one's text is skipped."""
    seconds, frames = sample_frames(data, param, tally, pixel_budget)
    lines: list[str] = []
    previous = None
    for frame in frames:
        text = ocr.read(frame.image, param)
        if text and text != previous:
            lines += [f"[{frame.seconds:.1f} s]", text]
        previous = text
    tally.modes.add("video_ocr")
    fps = tally.limits.video_fps
    head = f"[{label}: {seconds:.1f} s, {len(frames)} frames sampled at {fps:g} per second]"
    body = lines or ["[no text found in the sampled frames]"]
    return "\n".join([head, *body, f"[end of {label}]"])
