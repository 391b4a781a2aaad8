"""One `response.create` of a realtime session: a streamed chat completion, relayed as Realtime
events, and spoken sentence by sentence while its text still streams."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from adapters.tts import SentenceSplitter
from gateway.realtime.conversation import AudioPart, Message, Part, Spoken, Status, TextPart
from gateway.realtime.events import EventError, failure_of, new_id, unexpected
from gateway.realtime.loopback import Loopback, read_all, sse_events

if TYPE_CHECKING:
    from gateway.realtime.session import RealtimeLimits, RealtimeSession


@dataclass(frozen=True)
class Plan:
    modalities: list[str]
    instructions: str
    voice: str
    speed: float
    temperature: float | None
    max_tokens: int | None


class Response:
    """One `response.create`: a streamed chat completion, relayed as Realtime events."""

    def __init__(self, session: RealtimeSession, plan: Plan, limits: RealtimeLimits) -> None:
        self.id = new_id("resp")
        self.done = False
        self._session = session
        self._plan = plan
        self._limits = limits
        self._cancel = asyncio.Event()
        self._item_id = new_id("item")
        self._task: asyncio.Task[None] | None = None
        self._audio = "audio" in plan.modalities
        # Each spoken sentence and how many pcm bytes of it were sent: what a later
        # `conversation.item.truncate` needs to keep only the text the user heard.
        self.spoken: list[Spoken] = []

    @property
    def speech_model(self) -> str:
        return self._limits.speech_model

    @property
    def loopback(self) -> Loopback:
        return self._session.loopback

    @property
    def cancelled(self) -> asyncio.Event:
        return self._cancel

    async def start(self) -> None:
        await self._emit_response("in_progress")
        self._task = asyncio.create_task(self._run())

    async def cancel(self) -> None:
        self._cancel.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _emit_response(
        self,
        status: str,
        *,
        output: list[Message] | None = None,
        usage: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        kind = "response.created" if status == "in_progress" else "response.done"
        await self._session.emit(
            {
                "type": kind,
                "response": {
                    "id": self.id,
                    "object": "realtime.response",
                    "status": status,
                    "status_details": details,
                    "output": [item.describe() for item in output or []],
                    "modalities": self._plan.modalities,
                    "voice": self._plan.voice,
                    "usage": usage,
                },
            }
        )

    async def _run(self) -> None:
        status, usage, text = "completed", None, ""
        details: dict[str, Any] | None = None
        try:
            text, usage, finish = await self._generate()
            if self._cancel.is_set():
                status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
            elif finish == "length":
                status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        except Exception as exc:
            problem = exc if isinstance(exc, EventError) else unexpected(exc)
            await self._session.error(problem, None)
            status = "failed"
            details = {
                "type": "failed",
                "error": {"type": problem.kind, "code": problem.code, "message": problem.message},
            }
        finally:
            self.done = True
        output = (
            [self._item(text, "completed" if status == "completed" else "incomplete")]
            if text or status == "completed"
            else []
        )
        if output:
            self._session.remember(output[0])
        await self._emit_response(status, output=output, usage=usage, details=details)

    def _item(self, text: str, status: Status) -> Message:
        return Message(self._item_id, "assistant", [self._part(text)], status)

    def _part(self, text: str) -> Part:
        # A spoken answer keeps what each sentence was spoken with, for a later truncate.
        return AudioPart(text, self.spoken) if self._audio else TextPart("text", text)

    async def _generate(self) -> tuple[str, dict[str, Any] | None, str | None]:
        await self._session.wait_for_transcripts()
        body = self._request_body()
        async with self._session.loopback.post(
            "/v1/chat/completions", orjson.dumps(body), self._cancel
        ) as answer:
            if answer.status != 200:
                raw = await read_all(answer.chunks)
                raise failure_of(orjson.loads(raw) if raw else {}, answer.status)
            await self._open_output()
            voice = _Speaker(self, self._plan) if self._audio else None
            try:
                text, usage, finish = await self._read(answer.chunks, voice)
                if voice is not None:
                    await voice.finish(cancelled=self._cancel.is_set())
            finally:
                if voice is not None:
                    await voice.stop()
        await self._close_output(text)
        return text, usage, finish

    def _request_body(self) -> dict[str, Any]:
        """The chat completion that answers: the conversation so far, streamed with its usage."""
        plan = self._plan
        body: dict[str, Any] = {
            "model": self._session_model,
            "messages": self._session.messages(plan.instructions),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if plan.temperature is not None:
            body["temperature"] = plan.temperature
        if plan.max_tokens is not None:
            body["max_tokens"] = plan.max_tokens
        if not body["messages"]:
            raise EventError(
                "The conversation is empty: add an item before asking for a response.",
                code="conversation_empty",
            )
        return body

    async def _read(
        self, chunks: AsyncIterator[bytes], voice: _Speaker | None
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        """The answer's text, usage and finish reason, each delta sent on (and spoken) as it comes."""
        texts: list[str] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None
        async for event in sse_events(chunks):
            if self._cancel.is_set():
                break
            if "error" in event:
                failure = event["error"] if isinstance(event["error"], dict) else {}
                raise EventError(
                    str(failure.get("message", "The engine failed.")),
                    code=str(failure.get("code") or "server_error"),
                    kind="server_error",
                )
            if isinstance(event.get("usage"), dict):
                usage = _realtime_usage(event["usage"])
            for choice in event.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content")
                finish = choice.get("finish_reason") or finish
                if delta:
                    texts.append(delta)
                    await self._delta(delta)
                    if voice is not None:
                        voice.feed(delta)
        return "".join(texts), usage, finish

    @property
    def _session_model(self) -> str:
        return self._session.model

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self._item_id, "output_index": 0, "content_index": 0}

    async def _open_output(self) -> None:
        item = Message(self._item_id, "assistant", [], "in_progress").describe()
        await self._session.emit(
            {"type": "response.output_item.added", "response_id": self.id, "output_index": 0, "item": item}
        )
        part = self._part("").describe()
        await self._session.emit({"type": "response.content_part.added", **self._where(), "part": part})

    async def _delta(self, delta: str) -> None:
        kind = "response.audio_transcript.delta" if self._audio else "response.text.delta"
        await self._session.emit({"type": kind, **self._where(), "delta": delta})

    async def audio_delta(self, pcm: bytes) -> None:
        self.spoken[-1].pcm_bytes += len(pcm)
        await self._session.emit(
            {"type": "response.audio.delta", **self._where(), "delta": base64.b64encode(pcm).decode()}
        )

    async def _close_output(self, text: str) -> None:
        where = self._where()
        if self._audio:
            await self._session.emit({"type": "response.audio.done", **where})
            await self._session.emit({"type": "response.audio_transcript.done", **where, "transcript": text})
        else:
            await self._session.emit({"type": "response.text.done", **where, "text": text})
        part = self._part(text).describe()
        await self._session.emit({"type": "response.content_part.done", **where, "part": part})
        item = self._item(text, "incomplete" if self._cancel.is_set() else "completed").describe()
        await self._session.emit(
            {"type": "response.output_item.done", "response_id": self.id, "output_index": 0, "item": item}
        )


class _Speaker:
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
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

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
        self._response.spoken.append(Spoken(sentence))
        async with self._response.loopback.post("/v1/audio/speech", orjson.dumps(body), self._stop) as answer:
            if answer.status != 200:
                raw = await read_all(answer.chunks)
                raise failure_of(orjson.loads(raw) if raw else {}, answer.status)
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


def _realtime_usage(usage: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "total_tokens": prompt + completion,
        "input_tokens": prompt,
        "output_tokens": completion,
        "input_token_details": {"text_tokens": prompt, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": completion, "audio_tokens": 0},
    }
