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
        frames, last = _sample(container, stream, param, tally, budget, declared > 0, pixel_budget)
    except av.FFmpegError as exc:
        raise MediaError(param, f"This video is corrupt ({exc}).", code="invalid_video") from None
    finally:
        container.close()
    seconds = max(declared, last)
    tally.add_video(param, seconds)
    tally.video_frames += len(frames)
    return seconds, frames


def _sample(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    param: str,
    tally: Tally,
    budget: float,
    declared: bool,
    pixel_budget: int,
) -> tuple[list[Frame], float]:
    """The sampled frames and the last frame's time. A video that declares its length stops at the
    last frame sampled; one that does not is decoded on to learn its length, but never past the
    seconds allowed, nor past `max_decoded_fps` frames per allowed second (frames without times
    would otherwise be decoded without end), nor past the request's deadline."""
    limits = tally.limits
    step = 1.0 / limits.video_fps
    most = max(1, int(budget * limits.max_decoded_fps))
    next_at, last = 0.0, 0.0
    frames: list[Frame] = []
    for decoded, frame in enumerate(container.decode(stream), start=1):
        tally.check_time(param)
        at = float(frame.time) if frame.time is not None else last
        last = max(last, at)
        if at > budget:
            tally.add_video(param, at)  # raises
        if decoded > most:
            raise MediaError(
                param,
                f"This video has more than {most} frames; at most {limits.max_decoded_fps:g} frames per "
                f"second of the {limits.max_video_seconds:g} s allowed are decoded.",
                code="video_too_long",
            )
        if len(frames) >= limits.max_video_frames:
            if declared:
                break
            continue
        if at + 1e-6 >= next_at:
            frames.append(Frame(at, fit_budget(frame.to_image(), pixel_budget)))
            next_at = at + step
    return frames, last


def video_text(data: bytes, param: str, tally: Tally, ocr: Ocr, label: str, pixel_budget: int) -> str:
    """The sampled frames' text with their times; a frame that repeats the last one's text is skipped."""
    seconds, frames = sample_frames(data, param, tally, pixel_budget)
    lines: list[str] = []
    previous = None
    for frame in frames:
        tally.check_time(param)
        text = ocr.read(frame.image, param, tally.time_left(ocr.timeout_s))
        if text and text != previous:
            lines += [f"[{frame.seconds:.1f} s]", text]
        previous = text
    tally.modes.add("video_ocr")
    fps = tally.limits.video_fps
    head = f"[{label}: {seconds:.1f} s, {len(frames)} frames sampled at {fps:g} per second]"
    body = lines or ["[no text found in the sampled frames]"]
    return "\n".join([head, *body, f"[end of {label}]"])
