"""The gateway's side of the adapters: find a chat request's media, route each part by what the
model accepts, run the work in a bounded pool off the event loop, and rewrite the request.

Requests without media parts are not touched (their bytes go to the engine as sent). A request
with media is re-serialised once, with each media part replaced; its usage then reports what
was derived (`usage.tantra_media`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Collection
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import orjson

from adapters import (
    Job,
    MediaError,
    Modality,
    Preprocessor,
    UrlFetcher,
    check_counts,
    find_media,
    route,
)
from adapters.sources import is_data_url
from gateway.errors import APIError, InvalidRequest, PayloadTooLarge
from gateway.observability import get_logger

_log = get_logger("tantra.media")


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
    """At most `concurrency` requests' media are processed at once, each in a worker thread; the
    event loop only finds parts, fetches allowed URLs and swaps the results in."""

    def __init__(
        self,
        preprocessor: Preprocessor,
        fetcher: UrlFetcher,
        executor: Executor,
        *,
        concurrency: int,
        queue_timeout_s: float,
    ) -> None:
        self._preprocessor = preprocessor
        self._fetcher = fetcher
        self._executor = executor
        self._slots = asyncio.Semaphore(concurrency)
        self._queue_timeout_s = queue_timeout_s

    @property
    def can_derive_text(self) -> bool:
        return self._preprocessor.ocr.available

    async def prepare(self, payload: dict[str, Any], accepts: Collection[Modality]) -> Prepared | None:
        """None when the request has no media parts; else its rewritten body. MediaError becomes
        the OpenAI error naming the part."""
        parts = find_media(payload)
        if not parts:
            return None
        started = time.perf_counter()
        try:
            check_counts(parts, self._preprocessor.limits)
            plans = [route(part, accepts, can_derive_text=self.can_derive_text) for part in parts]
            fetched = await asyncio.gather(
                *(
                    self._fetcher.fetch(url, part.param)
                    if (url := part.url) is not None and not is_data_url(url)
                    else _nothing()
                    for part in parts
                )
            )
            jobs = [Job(part, plan, blob) for part, plan, blob in zip(parts, plans, fetched, strict=True)]
            outcome = await self._run(jobs)
        except MediaError as exc:
            _log.info("media_refused", param=exc.param, code=exc.code, status=exc.status, reason=exc.message)
            raise as_api_error(exc) from None
        messages = payload["messages"]
        for job, replacement in zip(jobs, outcome.parts, strict=True):
            messages[job.part.message]["content"][job.part.index] = replacement
        assert outcome.tally is not None
        usage = outcome.tally.usage()
        _log.info("media_prepared", seconds=round(time.perf_counter() - started, 3), **usage)
        return Prepared(orjson.dumps(payload), usage)

    async def _run(self, jobs: list[Job]) -> Any:
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise MediaBusy(
                "Too many requests with media are being processed; try again shortly.",
                headers={"retry-after": "1"},
            ) from None
        loop = asyncio.get_running_loop()
        # The worker sees the request's log context (request id, tenant) through a copy of it.
        context = contextvars.copy_context()
        try:
            work = self._executor.submit(context.run, self._preprocessor.run, jobs)
        except BaseException:
            self._slots.release()
            raise
        # The slot frees when the work ends, not when its waiter does: a client that leaves
        # cannot make room for more work than the pool really has.
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._slots.release))
        return await asyncio.wrap_future(work)


async def _nothing() -> None:
    return None


def as_api_error(exc: MediaError) -> APIError:
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
