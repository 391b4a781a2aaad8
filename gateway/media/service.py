"""The gateway's side of the adapters: find a chat request's media, route each part by what the
model accepts, run the work in a bounded pool off the event loop, and rewrite the request.

Requests without media parts are not touched (their bytes go to the engine as sent). A request
with media is re-serialised once, with each media part replaced; its usage then reports what
was derived (`usage.tantra_media`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog
from starlette.types import Receive

from adapters import (
    Job,
    MediaError,
    Modality,
    Preprocessed,
    Preprocessor,
    UrlFetcher,
    check_counts,
    find_media,
    route,
)
from adapters.limits import Stop, Tally, deadline_error
from adapters.parts import PART_TYPES, MediaPart, forwarded
from adapters.sources import decode_base64, decode_data_url, is_data_url
from adapters.stt import DecodedAudio, Transcriber, TranscriberBusy
from gateway.errors import APIError, InvalidRequest, PayloadTooLarge
from gateway.http.disconnect import unless_disconnected
from gateway.media.workers import MediaWorkerSpec, media_executor, run_in_worker
from gateway.observability import get_logger

_log = get_logger("tantra.media")

__all__ = ["MediaService", "MediaWorkerSpec", "Prepared", "media_executor", "with_media_usage"]


# Called with the seconds of audio about to be transcribed, once decoded and before whisper runs:
# the caller's audio-seconds limit, which raises to refuse the request.
AdmitAudio = Callable[[float], Awaitable[None]]


class MediaBusy(APIError):
    status = 503
    type = "server_error"
    code = "preprocessing_busy"


@dataclass(frozen=True)
class Prepared:
    """The rewritten request body, and what its media used (for `usage.tantra_media`)."""

    body: bytes
    usage: dict[str, Any]


class MediaService:
    """At most `concurrency` requests' media are processed at once, each in a worker (process); the
    event loop only finds parts, fetches allowed URLs and swaps the results in."""

    def __init__(
        self,
        preprocessor: Preprocessor,
        fetcher: UrlFetcher,
        executor: Callable[[], Executor],
        *,
        concurrency: int,
        queue_timeout_s: float,
        transcriber: Transcriber | None = None,
    ) -> None:
        self._preprocessor = preprocessor
        self._transcriber = transcriber
        self._fetcher = fetcher
        self._new_executor = executor
        self._executor = executor()
        self._slots = asyncio.Semaphore(concurrency)
        self._queue_timeout_s = queue_timeout_s
        # Where a request's stop flag is created when its client leaves (see adapters.limits.Stop).
        self._flags = Path(tempfile.mkdtemp(prefix="tantra-media-"))

    @property
    def can_derive_text(self) -> bool:
        return self._preprocessor.ocr.available

    async def prepare(
        self,
        payload: dict[str, Any],
        accepts: Collection[Modality],
        *,
        admit_audio: AdmitAudio | None = None,
        receive: Receive | None = None,
    ) -> Prepared | None:
        """None when the request has no media parts; else its rewritten body. MediaError becomes
        the OpenAI error naming the part. The audio parts to transcribe are all decoded first and
        their total passed to `admit_audio` before any is transcribed; a video's soundtrack is
        passed on its own, once decoded. With `receive` (the request's), a client that leaves stops
        the work (ClientGone): OCR of a long scan can take minutes."""
        try:
            parts = find_media(payload)  # refuses parts it cannot check, before any fetch
        except MediaError as exc:
            raise _refused(exc) from None
        if not parts:
            return None
        started = time.perf_counter()
        limit = self._preprocessor.limits.deadline_s
        # The whole preparation (fetches, queue, decoding, OCR, transcription) has one deadline;
        # the worker is told it too, and is told to stop when this coroutine is cancelled.
        stop = Stop.after(limit, str(self._flags / uuid.uuid4().hex))
        work = self._work(parts, accepts, admit_audio, stop)
        try:
            async with asyncio.timeout(limit):
                replaced, tally = await (work if receive is None else unless_disconnected(receive, work))
        except TimeoutError:
            raise _refused(deadline_error(None, limit)) from None
        except MediaError as exc:
            raise _refused(exc) from None
        messages = payload["messages"]
        for job, replacement in replaced:
            messages[job.part.message]["content"][job.part.index] = replacement
        usage = tally.usage()
        _log.info("media_prepared", seconds=round(time.perf_counter() - started, 3), **usage)
        return Prepared(orjson.dumps(payload), usage)

    async def _work(
        self,
        parts: list[MediaPart],
        accepts: Collection[Modality],
        admit_audio: AdmitAudio | None,
        stop: Stop,
    ) -> tuple[list[tuple[Job, dict[str, Any]]], Tally]:
        """Each part's replacement, and what all of them used."""
        jobs = await self._jobs(parts, accepts)
        # Audio is transcribed by the speech workers, the rest by the media workers.
        audio = [job for job in jobs if job.part.kind == "audio"]
        others = [job for job in jobs if job.part.kind != "audio"]
        heard = Tally(self._preprocessor.limits)
        replacements = await self._hear(audio, heard, admit_audio)
        outcome = await self._run(others, stop) if others else Preprocessed(tally=Tally(heard.limits))
        # A video turned into text gets its soundtrack's transcript too, once its frames passed.
        seen = [
            await self._soundtrack(job, part, heard, admit_audio)
            for job, part in zip(others, outcome.parts, strict=True)
        ]
        assert outcome.tally is not None
        outcome.tally.absorb(heard)
        return [*zip(others, seen, strict=True), *zip(audio, replacements, strict=True)], outcome.tally

    async def _jobs(self, parts: list[MediaPart], accepts: Collection[Modality]) -> list[Job]:
        """Each part with its plan (by what the model accepts) and its bytes if fetched from a URL."""
        check_counts(parts, self._preprocessor.limits)
        can_transcribe = self._transcriber is not None
        plans = [
            route(part, accepts, can_derive_text=self.can_derive_text, can_transcribe=can_transcribe)
            for part in parts
        ]
        fetched = await asyncio.gather(
            *(
                self._fetcher.fetch(url, part.param)
                if (url := part.url) is not None and not is_data_url(url)
                else _nothing()
                for part in parts
            )
        )
        return [Job(part, plan, blob) for part, plan, blob in zip(parts, plans, fetched, strict=True)]

    async def _hear(
        self, audio: list[Job], heard: Tally, admit_audio: AdmitAudio | None
    ) -> list[dict[str, Any]]:
        """The audio parts' replacements: all decoded and admitted by their total before whisper runs."""
        decoded = [await self._decode_part(job, heard) for job in audio]
        seconds = sum(pcm.seconds for pcm in decoded if pcm is not None)
        if seconds > 0 and admit_audio is not None:
            await admit_audio(seconds)
        return [
            await self._audio(job, pcm, number, heard)
            for number, (job, pcm) in enumerate(zip(audio, decoded, strict=True), 1)
        ]

    async def _decode_part(self, job: Job, tally: Tally) -> DecodedAudio | None:
        """An audio part to transcribe, decoded (None for one the model takes itself)."""
        part = job.part
        if job.plan == "native":
            return None
        data = job.fetched.data if job.fetched is not None else _audio_bytes(part, tally)
        if job.fetched is not None:
            tally.add_bytes(part.param, len(data))
        return await self._decode(data, part.param)

    async def _audio(self, job: Job, pcm: DecodedAudio | None, number: int, tally: Tally) -> dict[str, Any]:
        """An audio part: as sent (fetched bytes as a data URL) to a model that takes audio, else its
        transcript as text."""
        if pcm is None:
            return forwarded(job.part, job.fetched)
        heard = await self._transcribe(pcm, job.part.param, tally)
        label = f"audio {number}"
        text = f"[{label}: {pcm.seconds:.1f} s, transcribed]\n{heard}\n[end of {label}]"
        tally.derived_chars += len(text)
        return {"type": "text", "text": text}

    async def _soundtrack(
        self, job: Job, replacement: dict[str, Any], tally: Tally, admit_audio: AdmitAudio | None
    ) -> dict[str, Any]:
        """A video given to a text-only model as frame text, with its audio track's transcript
        added before its end marker (a video without an audio track, or no speech model: as is)."""
        part = job.part
        if self._transcriber is None or part.kind != "video" or replacement.get("type") != "text":
            return replacement
        url = part.url or ""
        data = (
            job.fetched.data if job.fetched is not None else decode_base64(url.partition(",")[2], part.param)
        )
        if not await self._transcriber.has_audio(data):
            return replacement
        pcm = await self._decode(data, part.param)
        if admit_audio is not None:
            await admit_audio(pcm.seconds)
        heard = await self._transcribe(pcm, part.param, tally)
        body, _, end = str(replacement["text"]).rpartition("\n")
        added = f"[soundtrack, transcribed]\n{heard}"
        tally.derived_chars += len(added) + 1
        return {"type": "text", "text": f"{body}\n{added}\n{end}"}

    async def _decode(self, data: bytes, param: str) -> DecodedAudio:
        assert self._transcriber is not None
        try:
            return await self._transcriber.decode(data, param=param)
        except MediaError as exc:
            raise MediaError(param, exc.message, code=exc.code, status=exc.status) from None

    async def _transcribe(self, pcm: DecodedAudio, param: str, tally: Tally) -> str:
        """The transcript of `pcm`, counted in the request's tally."""
        assert self._transcriber is not None
        try:
            transcript = await self._transcriber.transcribe(pcm)
        except TranscriberBusy:
            raise MediaBusy(
                "Every speech worker is busy; try again shortly.", headers={"retry-after": "1"}
            ) from None
        except MediaError as exc:
            raise MediaError(param, exc.message, code=exc.code, status=exc.status) from None
        tally.audios += 1
        tally.audio_seconds += pcm.seconds
        tally.modes.add("transcription")
        return transcript.text or "[no speech recognised]"

    async def _run(self, jobs: list[Job], stop: Stop) -> Any:
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise MediaBusy(
                "Too many requests with media are being processed; try again shortly.",
                headers={"retry-after": "1"},
            ) from None
        loop = asyncio.get_running_loop()
        executor = self._executor
        if isinstance(executor, ProcessPoolExecutor):
            # Either way the worker logs with the request's context (request id, tenant).
            task: tuple[Any, ...] = (run_in_worker, jobs, structlog.contextvars.get_contextvars(), stop)
        else:
            task = (contextvars.copy_context().run, self._preprocessor.run, jobs, stop)

        def submit() -> Future[Preprocessed]:
            work = executor.submit(*task)
            # The slot frees when the work ends, not when its waiter does: a client that leaves
            # cannot make room for more work than the pool really has.
            work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._slots.release))
            work.add_done_callback(lambda _: _remove(stop.flag))
            return work

        def unless_submitted(submitting: asyncio.Future[Future[Preprocessed]]) -> None:
            if submitting.cancelled() or submitting.exception() is not None:
                self._slots.release()

        # Submitting may start a worker process (a fork of the forkserver that must answer with its
        # pid): done in a thread, so that not even a cold pool holds up the event loop.
        submitting = asyncio.ensure_future(asyncio.to_thread(submit))
        submitting.add_done_callback(unless_submitted)
        try:
            work = await asyncio.shield(submitting)
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            # The client left or the deadline passed: the worker stops at its next check (a page,
            # an image, a frame) instead of finishing work nobody will read.
            _raise_flag(stop.flag)
            raise
        except BrokenProcessPool:
            # A decoder crashed its process (or the OS killed it): replace the pool (once, however
            # many requests saw it break) and fail this request.
            _log.error("media_worker_died")
            if self._executor is executor:
                self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            raise InvalidRequest(
                "A media part of this request crashed its decoder and could not be processed.",
                code="invalid_content_part",
            ) from None

    async def close(self) -> None:
        """Stop the workers (waiting in a thread: one may be finishing an OCR call)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        shutil.rmtree(self._flags, ignore_errors=True)


def _raise_flag(flag: str | None) -> None:
    if flag is not None:
        with contextlib.suppress(OSError):
            Path(flag).touch()


def _remove(flag: str | None) -> None:
    if flag is not None:
        with contextlib.suppress(OSError):
            os.unlink(flag)


async def _nothing() -> None:
    return None


def _audio_bytes(part: MediaPart, tally: Tally) -> bytes:
    """`input_audio.data` (bare base64, as OpenAI sends it) or an `audio_url` data URL."""
    source = part.part.get(PART_TYPES[str(part.part["type"])][1])
    url = part.url
    if url is not None and is_data_url(url):
        return decode_data_url(url, part.param, tally).data
    data = source.get("data") if isinstance(source, dict) else None
    if not isinstance(data, str):
        raise MediaError(part.param, "An `input_audio` part needs `data`: the audio, base64-encoded.")
    tally.add_bytes(part.param, len(data) * 3 // 4)
    return decode_base64(data, part.param)


@contextlib.contextmanager
def as_api_errors() -> Iterator[None]:
    """A MediaError raised inside, as the OpenAI error naming the part."""
    try:
        yield
    except MediaError as exc:
        raise as_api_error(exc) from None


def _refused(exc: MediaError) -> APIError:
    """A refusal of the request's media, logged once with its reason."""
    _log.info("media_refused", param=exc.param, code=exc.code, status=exc.status, reason=exc.message)
    return as_api_error(exc)


def as_api_error(exc: MediaError) -> APIError:
    if exc.status >= 500:
        return APIError(exc.message, param=exc.param, code=exc.code, status=exc.status)
    if exc.status == 413:
        return PayloadTooLarge(exc.message, param=exc.param, code=exc.code)
    return InvalidRequest(exc.message, param=exc.param, code=exc.code, status=exc.status)


def with_media_usage(answer: bytes, media: dict[str, Any]) -> bytes:
    """A non-streamed answer with `usage.tantra_media` added (only requests whose media were processed)."""
    try:
        body = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return answer
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        return answer
    body["usage"]["tantra_media"] = media
    return orjson.dumps(body)
