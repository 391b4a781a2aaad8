"""A spoken answer of /v1/realtime: each sentence of the response's text, as it completes, becomes
one /v1/audio/speech request (pcm), its audio sent on as `response.audio.delta` events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from adapters.tts import SentenceSplitter
from gateway.background import cancelled
from gateway.realtime.conversation import Spoken
from gateway.realtime.events import EventError, failure_of
from gateway.realtime.loopback import read_all

if TYPE_CHECKING:
    from gateway.realtime.response import Plan, Response


class Speaker:
    """Speaks a response sentence by sentence while its text still streams: each complete sentence
    becomes one /v1/audio/speech request (pcm), its audio sent as `response.audio.delta` events."""

    def __init__(self, response: Response, plan: Plan) -> None:
        self._response = response
        self._plan = plan
        self._splitter = SentenceSplitter()
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._stop = response.cancelled
        self._task = asyncio.create_task(self._run())
        self.failure: EventError | None = None
        # The session's language, else the one found in the first sentence: kept for the rest of
        # the answer, so its voice does not change from sentence to sentence.
        self._language = plan.language

    def feed(self, delta: str) -> None:
        for sentence in self._splitter.feed(delta):
            self._queue.put_nowait(sentence)

    async def finish(self, *, cancelled: bool) -> None:
        if not cancelled:
            for sentence in self._splitter.flush():
                self._queue.put_nowait(sentence)
            self._queue.put_nowait(None)
            await asyncio.shield(self._task)
        if self.failure is not None:
            raise self.failure

    async def stop(self) -> None:
        await cancelled(self._task)

    async def _run(self) -> None:
        while (sentence := await self._queue.get()) is not None and not self._stop.is_set():
            try:
                await self._speak(sentence)
            except EventError as problem:
                self.failure = problem
                return

    async def _speak(self, sentence: str) -> None:
        body = {
            "model": self._response.speech_model,
            "input": sentence,
            "voice": self._plan.voice,
            "response_format": "pcm",
            "speed": self._plan.speed,
        }
        if self._language is not None:
            body["language"] = self._language
        self._response.spoken.append(Spoken(sentence))
        async with self._response.loopback.post("/v1/audio/speech", orjson.dumps(body), self._stop) as answer:
            if answer.status != 200:
                raw = await read_all(answer.chunks)
                raise failure_of(orjson.loads(raw) if raw else {}, answer.status)
            self._language = self._language or answer.headers.get("x-tantra-language")
            async for pcm in _whole_samples(answer.chunks):
                await self._response.audio_delta(pcm)


async def _whole_samples(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Chunks cut at 16-bit sample boundaries, as a client decoding each delta needs."""
    carry = b""
    async for chunk in chunks:
        data = carry + chunk
        cut = len(data) - len(data) % 2
        carry = data[cut:]
        if cut:
            yield data[:cut]
