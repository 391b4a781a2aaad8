"""One `response.create` of a realtime session: a streamed chat completion, relayed as Realtime
events: its text as a `message` item (spoken sentence by sentence while it still streams, with
audio), its tool calls as `function_call` items (calls.py). An in-band response's items join the
conversation; an out-of-band one (`conversation: "none"`) leaves it as it was, and may answer its
own `input` instead of the conversation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway.realtime import g711
from gateway.realtime.calls import Calls
from gateway.realtime.conversation import AudioPart, Entry, Message, Part, Spoken, TextPart, chat_messages
from gateway.realtime.events import EventError, failure_of, new_id, unexpected
from gateway.realtime.loopback import Loopback, read_all, sse_events
from gateway.realtime.speaker import Speaker
from gateway.realtime.tools import chat_tool_choice, chat_tools

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
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    in_band: bool = True  # `conversation: "auto"`: the answer joins the conversation
    input: list[Entry] | None = None  # the response's own context, instead of the conversation
    metadata: dict[str, str] | None = None
    output_format: g711.Format = "pcm16"
    # The session's input_audio_transcription.language: the answer is spoken in its voice.
    language: str | None = None


class Response:
    """One `response.create`: a streamed chat completion, relayed as Realtime events."""

    def __init__(self, session: RealtimeSession, plan: Plan, limits: RealtimeLimits) -> None:
        self.id = new_id("resp")
        self.done = False
        self._session = session
        self._plan = plan
        self._limits = limits
        self._cancel = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._audio = "audio" in plan.modalities
        self._encode = g711.Encoder(plan.output_format)
        self._output: list[Entry] = []  # the items in output order
        self._message: Message | None = None  # the answer's text, once it has begun
        self._texts: list[str] = []
        self._calls = Calls(self)
        self._previous: str | None = None  # the conversation's last item before the next of ours
        # Each spoken sentence and how many pcm bytes of it were sent: what a later
        # `conversation.item.truncate` needs to keep only the text the user heard.
        self.spoken: list[Spoken] = []

    @property
    def in_band(self) -> bool:
        return self._plan.in_band

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
        self._previous = self._session.last_item_id()
        await self._emit_response("in_progress")
        self._task = asyncio.create_task(self._run())

    async def cancel(self) -> None:
        self._cancel.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def emit(self, event: dict[str, Any]) -> None:
        await self._session.emit(event)

    async def _emit_response(
        self,
        status: str,
        *,
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
                    "output": [item.describe() for item in self._output],
                    "conversation_id": self._session.conversation_id if self.in_band else None,
                    "modalities": self._plan.modalities,
                    "voice": self._plan.voice,
                    "output_audio_format": self._plan.output_format,
                    "metadata": self._plan.metadata,
                    "usage": usage,
                },
            }
        )

    async def _run(self) -> None:
        status, usage = "completed", None
        details: dict[str, Any] | None = None
        try:
            usage, finish = await self._generate()
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
        if self._message is not None:  # also when the stream failed before its end
            self._message.content = [self._part("".join(self._texts))]
        # What failed before a word keeps nothing; what was cut short keeps what was said.
        self._output = [item for item in self._output if not isinstance(item, Message) or item.text()]
        if not self._output and self._message is not None and status == "completed":
            self._output = [self._message]
        for item in self._output:
            if status != "completed" or item.status == "in_progress":
                item.status = "incomplete"
            if self.in_band:
                self._session.remember(item)
        await self._emit_response(status, usage=usage, details=details)

    def _part(self, text: str) -> Part:
        # A spoken answer keeps what each sentence was spoken with, for a later truncate.
        return AudioPart(text, self.spoken) if self._audio else TextPart("text", text)

    async def _generate(self) -> tuple[dict[str, Any] | None, str | None]:
        await self._session.wait_for_transcripts()
        body = self._request_body()
        async with self._session.loopback.post(
            "/v1/chat/completions", orjson.dumps(body), self._cancel
        ) as answer:
            if answer.status != 200:
                raw = await read_all(answer.chunks)
                raise failure_of(orjson.loads(raw) if raw else {}, answer.status)
            await self._session.rate_limits(answer.headers)
            voice = Speaker(self, self._plan) if self._audio else None
            try:
                usage, finish = await self._read(answer.chunks, voice)
                if voice is not None:
                    await voice.finish(cancelled=self._cancel.is_set())
            finally:
                if voice is not None:
                    await voice.stop()
        if self._message is None and not self._output:
            await self._open_message()  # nothing said: an empty answer, as before
        if self._message is not None:
            await self._close_message()
        await self._calls.finish(complete=not self._cancel.is_set() and finish != "length")
        return usage, finish

    def _request_body(self) -> dict[str, Any]:
        """The chat completion that answers: the conversation so far (or the response's own
        input), with the tools, streamed with its usage."""
        plan = self._plan
        instructions = plan.instructions
        messages = (
            chat_messages(plan.input, instructions)
            if plan.input is not None
            else self._session.messages(instructions)
        )
        body: dict[str, Any] = {
            "model": self._session.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if plan.tools and plan.tool_choice != "none":
            body["tools"] = chat_tools(plan.tools)
            body["tool_choice"] = chat_tool_choice(plan.tool_choice)
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
        self, chunks: AsyncIterator[bytes], voice: Speaker | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The answer's usage and finish reason; each text delta sent on (and spoken) as it comes,
        each tool call piece as its function call's arguments."""
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
                delta = choice.get("delta") or {}
                finish = choice.get("finish_reason") or finish
                if delta.get("content"):
                    await self._text(delta["content"], voice)
                if delta.get("tool_calls"):
                    await self._calls.feed(delta["tool_calls"])
        return usage, finish

    async def _text(self, delta: str, voice: Speaker | None) -> None:
        if self._message is None:
            await self._open_message()
        self._texts.append(delta)
        kind = "response.audio_transcript.delta" if self._audio else "response.text.delta"
        await self._session.emit({"type": kind, **self._where(), "delta": delta})
        if voice is not None:
            voice.feed(delta)

    def _where(self) -> dict[str, Any]:
        assert self._message is not None
        index = self._output.index(self._message)
        return {
            "response_id": self.id,
            "item_id": self._message.id,
            "output_index": index,
            "content_index": 0,
        }

    # The output items: announced when they begin (calls.Output), finished when they end.
    async def open_item(self, item: Entry) -> int:
        self._output.append(item)
        index = len(self._output) - 1
        described = item.describe()
        await self._session.emit(
            {
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": index,
                "item": described,
            }
        )
        if self.in_band:  # GA's conversation.item.added (beta's .created)
            previous, self._previous = self._previous, item.id
            await self._session.emit(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": described}
            )
        return index

    async def close_item(self, item: Entry, index: int) -> None:
        described = item.describe()
        await self._session.emit(
            {
                "type": "response.output_item.done",
                "response_id": self.id,
                "output_index": index,
                "item": described,
            }
        )
        if self.in_band:  # GA only
            await self._session.emit({"type": "conversation.item.done", "item": described})

    async def _open_message(self) -> None:
        self._message = Message(new_id("item"), "assistant", [], "in_progress")
        await self.open_item(self._message)
        part = self._part("").describe()
        await self._session.emit({"type": "response.content_part.added", **self._where(), "part": part})

    async def audio_delta(self, pcm: bytes) -> None:
        self.spoken[-1].pcm_bytes += len(pcm)
        if (out := self._session.audio_out) is not None:  # WebRTC: played on the track, no deltas
            await out.play(self.id, pcm)
            return
        await self._send_audio(self._encode(pcm))

    async def _send_audio(self, encoded: bytes) -> None:
        if encoded:
            await self._session.emit(
                {"type": "response.audio.delta", **self._where(), "delta": base64.b64encode(encoded).decode()}
            )

    async def _close_message(self) -> None:
        assert self._message is not None
        where, text = self._where(), "".join(self._texts)
        if self._audio:
            if (out := self._session.audio_out) is not None:
                await out.finish(self.id)
            elif not self._cancel.is_set():  # the last ms the g711 resampler holds
                await self._send_audio(self._encode.flush())
            await self._session.emit({"type": "response.audio.done", **where})
            await self._session.emit({"type": "response.audio_transcript.done", **where, "transcript": text})
        else:
            await self._session.emit({"type": "response.text.done", **where, "text": text})
        part = self._part(text)
        await self._session.emit({"type": "response.content_part.done", **where, "part": part.describe()})
        self._message.content = [part]
        self._message.status = "incomplete" if self._cancel.is_set() else "completed"
        await self.close_item(self._message, where["output_index"])


def _realtime_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {
        "total_tokens": prompt + completion,
        "input_tokens": prompt,
        "output_tokens": completion,
        "input_token_details": {"text_tokens": prompt, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": completion, "audio_tokens": 0},
    }
