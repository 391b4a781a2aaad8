"""A streamed chat completion with a spoken answer, in OpenAI's shape: the engine's text goes out as
`delta.audio.transcript` pieces as it comes, the audio as `delta.audio.data` events as each sentence
is spoken (base64 of the requested format's next bytes: raw s16le 24 kHz for `pcm16`, as OpenAI
streams; the pieces of one file for the others), the first audio delta carrying the audio's `id`,
the last one its `expires_at` only, then the finish event, usage and `[DONE]` as usual.

Speech runs beside the relay (eSpeak NG in subprocesses, PyAV in threads: nothing on the event loop)
and never holds it up: the engine's events are read at its pace, and only the finish event and what
follows wait for the last sentence's audio. A client that leaves stops both."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.types import Send

from gateway.admission.outcome import Outcome
from gateway.errors import sse_error_event
from gateway.http.sse import DONE, EVENT_END, sse_event
from gateway.http.streaming import send_chunk
from gateway.services.relay import EngineEvents, StreamUsage
from gateway.services.spoken import ChatSpeech, Speaking, speech_failed, with_speech_usage
from gateway.upstreams.stream import UpstreamStream

_log = logging.getLogger("tantra.tts")
# The fields an audio event copies from the engine's chunks.
_CHUNK_FIELDS = ("id", "object", "created", "model", "system_fingerprint")


class SpokenStream(EngineEvents):
    """The engine's stream, read for usage as `SSERelay` does, its text spoken on the way."""

    def __init__(
        self,
        stream: UpstreamStream,
        *,
        usage: StreamUsage,
        speech: ChatSpeech,
        speaking: Speaking,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[Outcome], None] | None = None,
        on_complete: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(stream, headers, on_close)
        self._usage = usage
        self._speech = speech
        self._speaking = speaking
        # As SSERelay's: run before the last events leave, so a client that read `[DONE]` finds
        # what it records (the stored completion).
        self._on_complete = on_complete

    async def pump(self, send: Send) -> Outcome:
        lock = asyncio.Lock()
        voice = _Voice(self._speech, self._speaking, send, lock)
        sink = _SpokenSink(self._usage, voice, send, lock)
        speaking = asyncio.ensure_future(voice.run())
        try:
            end = await self._stream.run(sink)
            usage = self._usage
            await sink.feed_out(usage.release() + (end.tail if end.tail is not None else usage.rest()))
            voice.end()
            if not end.completed:
                speaking.cancel()
            # Not `await speaking`: a cancelled task's CancelledError must not be told apart from this
            # pump's own (the client leaving), which has to go on up.
            await asyncio.wait((speaking,))
        finally:
            speaking.cancel()
        if voice.error is not None:
            await send_chunk(send, sse_error_event(speech_failed(voice.error)) + DONE, more=False)
            return Outcome.FAILED
        if end.completed and self._on_complete is not None:
            self._on_complete()
        await send_chunk(send, voice.closing() + sink.held(), more=False)
        return Outcome.COMPLETED if end.completed else Outcome.FAILED


class _Voice:
    """The answer's text, queued as it arrives, spoken sentence by sentence into audio events."""

    def __init__(self, speech: ChatSpeech, speaking: Speaking, send: Send, lock: asyncio.Lock) -> None:
        self._speech = speech
        self.speaking = speaking
        self._send = send
        self._lock = lock
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.error: Exception | None = None
        self.chunk: dict[str, Any] = {"object": "chat.completion.chunk"}
        self.spoke = False

    def put(self, text: str) -> None:
        self.spoke = True
        self.speaking.characters += len(text)
        if self.error is None:
            self._queue.put_nowait(text)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def run(self) -> None:
        first = await self._queue.get()
        if first is None:
            return  # nothing to say (a tool call): no audio at all
        audio = self._speech.audio(self.speaking, self._text(first))
        try:
            async for chunk in audio:
                await self._emit({"data": base64.b64encode(chunk).decode()})
        except Exception as exc:
            _log.exception("speech synthesis of a chat answer failed mid-stream")
            self.error = exc
        finally:
            await audio.aclose()

    async def _text(self, first: str) -> AsyncIterator[str]:
        yield first
        while (piece := await self._queue.get()) is not None:
            yield piece

    async def _emit(self, audio: dict[str, Any]) -> None:
        async with self._lock:
            await send_chunk(self._send, self.event(audio))

    def event(self, audio: dict[str, Any]) -> bytes:
        return sse_event({**self.chunk, "choices": [_choice({"audio": audio})]})

    def closing(self) -> bytes:
        """OpenAI's last audio update: the expiry alone (the SDK adds numbers up, so it comes once)."""
        return self.event({"expires_at": self.speaking.expires_at}) if self.spoke else b""


def _choice(delta: dict[str, Any]) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}


class _SpokenSink:
    """The engine's events, as `StreamUsage` passes them, with `delta.content` turned into
    `delta.audio.transcript` and given to the voice; from the finish event on they are held until
    the audio is out."""

    def __init__(self, usage: StreamUsage, voice: _Voice, send: Send, lock: asyncio.Lock) -> None:
        self._usage = usage
        self._voice = voice
        self._send = send
        self._lock = lock
        self._held: list[bytes | dict[str, Any]] = []
        self._holding = False
        self._named = False

    @property
    def done(self) -> bool:
        return self._usage.done

    async def feed(self, chunk: bytes) -> None:
        await self.feed_out(self._usage.feed(chunk))

    def drop_partial(self) -> None:
        self._usage.rest()

    async def feed_out(self, data: bytes) -> None:
        """Complete events on their way out (a partial one at the end is kept as it is)."""
        if not data:
            return
        *events, rest = data.split(EVENT_END)
        now = b"".join(out + EVENT_END for out in map(self._spoken, filter(None, events)) if out)
        if rest and self._holding:
            self._held.append(rest)
        elif rest:
            now += rest
        if now:
            async with self._lock:
                await send_chunk(self._send, now)

    def held(self) -> bytes:
        """The events held since the finish event, the usage event's with `tantra_speech` added."""
        held, self._held = self._held, []
        return b"".join(event if isinstance(event, bytes) else self._usage_event(event) for event in held)

    def _usage_event(self, body: dict[str, Any]) -> bytes:
        with_speech_usage(body["usage"], self._voice.speaking)
        return b"data: " + orjson.dumps(body) + EVENT_END

    def _spoken(self, event: bytes) -> bytes:
        """The event as the client gets it; once the answer has finished, held (b"" returned)."""
        body = _parsed(event)
        if body is None:
            self._holding = self._holding or event == b"data: [DONE]"
            return self._hold(event)
        if "error" in body:
            self._holding = True
            return self._hold(event)
        choices = body.get("choices")
        if self._voice.chunk.get("id") is None:
            self._voice.chunk.update({key: body[key] for key in _CHUNK_FIELDS if key in body})
        changed, now = False, b""
        for choice in choices if isinstance(choices, list) else ():
            changed = self._transcribe(choice) or changed
            if _finishes(choice) and not self._holding:
                self._holding = True
                now = _last_words(body, choice)
        if choices == [] and isinstance(body.get("usage"), dict):
            # The usage event: its speech usage is added as it goes out, after the audio.
            self._holding = True
            self._held.append(body)
            return now
        held = self._hold(b"data: " + orjson.dumps(body) if changed else event)
        return now + EVENT_END + held if now and held else now or held

    def _transcribe(self, choice: Any) -> bool:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict) or "content" not in delta:
            return False
        text = delta.pop("content")
        if isinstance(text, str) and text:
            audio: dict[str, Any] = {"transcript": text}
            if not self._named:
                audio = {"id": self._voice.speaking.id, **audio}
                self._named = True
            delta["audio"] = audio
            self._voice.put(text)
        return True

    def _hold(self, event: bytes) -> bytes:
        if not self._holding:
            return event
        self._held.append(event + EVENT_END)
        return b""


def _last_words(body: dict[str, Any], choice: dict[str, Any]) -> bytes:
    """The transcript piece a finish event carries (vLLM's last token comes with it), taken out as
    an event of its own to go before the audio; the finish event is held with an empty delta."""
    delta = choice.get("delta")
    if not isinstance(delta, dict) or "audio" not in delta:
        return b""
    piece = {**choice, "delta": {"audio": delta.pop("audio")}, "finish_reason": None}
    choice["logprobs"] = None
    return b"data: " + orjson.dumps({**body, "choices": [piece]})


def _finishes(choice: Any) -> bool:
    return isinstance(choice, dict) and choice.get("finish_reason") is not None


def _parsed(event: bytes) -> dict[str, Any] | None:
    if not event.startswith(b"data: {"):
        return None
    try:
        body = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None
