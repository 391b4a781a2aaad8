"""MediaService's bounded pool on its own: a slot is held while its work runs (even when its waiter
has gone), a request that cannot get one in time is a 503, the work runs off the event loop, and a
worker process that dies takes only its own request with it."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from adapters import (
    TEXT_ONLY,
    ImageFilter,
    MediaLimits,
    Ocr,
    Preprocessed,
    Preprocessor,
    Tally,
    UrlFetcher,
    UrlPolicy,
)
from adapters.limits import Stop
from gateway.errors import APIError
from gateway.media.service import MediaService

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


class SlowPreprocessor(Preprocessor):
    """Sleeps instead of decoding, and says which thread it ran on."""

    def __init__(self, seconds: float) -> None:
        super().__init__(MediaLimits(), Ocr(), ImageFilter([]))
        self.seconds = seconds
        self.threads: list[str] = []

    def run(self, jobs: list[Any], stop: Stop | None = None) -> Preprocessed:
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        return Preprocessed(parts=[{"type": "text", "text": "done"} for _ in jobs], tally=Tally(self.limits))


def service(pre: Preprocessor, executor: ThreadPoolExecutor, queue_timeout_s: float) -> MediaService:
    fetcher = UrlFetcher(UrlPolicy([]), httpx.AsyncClient(), timeout_s=1, max_bytes=1)
    return MediaService(pre, fetcher, lambda: executor, concurrency=1, queue_timeout_s=queue_timeout_s)


def payload() -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": [IMAGE]}]}


async def test_work_runs_in_the_pool_and_the_loop_stays_free() -> None:
    pre = SlowPreprocessor(0.3)
    with ThreadPoolExecutor(1, thread_name_prefix="media-test") as executor:
        media = service(pre, executor, 5)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        prepared = await media.prepare(payload(), ("text", "image"))
        ticker.cancel()
    assert prepared is not None and b'"text":"done"' in prepared.body
    assert pre.threads[0].startswith("media-test")
    assert ticks >= 15  # the loop kept running while the work slept in its thread


async def test_busy_pool_is_a_503_and_a_slot_outlives_its_waiter() -> None:
    pre = SlowPreprocessor(0.5)
    with ThreadPoolExecutor(2) as executor:
        media = service(pre, executor, 0.1)
        first = asyncio.create_task(media.prepare(payload(), ("text", "image")))
        await asyncio.sleep(0.05)
        first.cancel()  # the client left; its work still runs and still holds the one slot
        with pytest.raises(APIError) as busy:
            await media.prepare(payload(), ("text", "image"))
        assert busy.value.status == 503 and busy.value.code == "preprocessing_busy"
        await asyncio.sleep(0.6)
        assert await media.prepare(payload(), ("text", "image")) is not None
    assert len(pre.threads) == 2


async def test_requests_without_media_are_not_touched() -> None:
    with ThreadPoolExecutor(1) as executor:
        media = service(SlowPreprocessor(0), executor, 1)
        plain = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
        assert await media.prepare(plain, TEXT_ONLY) is None


def crash_on_red() -> Any:
    """An image check that kills its process on a red image, standing in for a decoder that segfaults."""
    import os

    from adapters import Verdict

    def check(facts: Any, image: Any) -> Verdict:
        if image.convert("RGB").getpixel((0, 0)) == (255, 0, 0):
            os._exit(1)
        return Verdict(True)

    return check


async def test_worker_processes_do_the_work_and_a_dead_one_is_replaced() -> None:
    from PIL import Image

    from gateway.media.service import MediaWorkerSpec, media_executor
    from tests.adapters.media import data_url, png

    spec = MediaWorkerSpec(MediaLimits(), image_filter="tests.gateway.media.test_media_service:crash_on_red")
    fetcher = UrlFetcher(UrlPolicy([]), httpx.AsyncClient(), timeout_s=1, max_bytes=1)
    media = MediaService(
        spec.preprocessor(),
        fetcher,
        lambda: media_executor(spec, "process", 1),
        concurrency=1,
        queue_timeout_s=30,
    )

    def request(colour: str) -> dict[str, Any]:
        url = data_url(png(Image.new("RGB", (16, 16), colour)), "image/png")
        part = {"type": "image_url", "image_url": {"url": url}}
        return {"model": "m", "messages": [{"role": "user", "content": [part]}]}

    try:
        prepared = await media.prepare(request("blue"), ("text", "image"))
        assert prepared is not None and prepared.usage["images"] == 1
        with pytest.raises(APIError) as crashed:
            await media.prepare(request("red"), ("text", "image"))
        assert crashed.value.status == 400 and crashed.value.code == "invalid_content_part"
        again = await media.prepare(request("green"), ("text", "image"))
        assert again is not None and again.usage["images"] == 1
    finally:
        await media.close()
