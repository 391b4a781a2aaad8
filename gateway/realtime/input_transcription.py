"""The transcription of a realtime session's input audio, by the gateway's own
/v1/audio/transcriptions (through the loopback), in the background: a response created meanwhile
waits for the transcripts it answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from adapters.tts import wav_header
from gateway.http.multipart import multipart_body
from gateway.realtime.conversation import InputAudioPart, Message
from gateway.realtime.events import Emit, EventError, failure_of
from gateway.realtime.loopback import Loopback, read_all

# Tantra's extension fields of `conversation.item.input_audio_transcription.completed`, as the
# transcription answers them (`include[]`, docs/audio.md).
_LABELS = ("emotion", "audio_events")


class InputTranscriber:
    """Transcribes input audio parts; `options` is the session's `input_audio_transcription`."""

    def __init__(
        self,
        loopback: Loopback,
        emit: Emit,
        model: str,
        options: Callable[[], dict[str, Any] | None],
    ) -> None:
        self._loopback = loopback
        self._emit = emit
        self._model = model  # when the options name none
        self._options = options
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(self, item: Message, index: int, pcm: bytes) -> None:
        """Transcribe `pcm`, the audio of `item`'s part `index`, in the background."""
        key = f"{item.id}:{index}"
        self._running[key] = asyncio.create_task(self._run(item, index, pcm))
        self._running[key].add_done_callback(lambda _: self._running.pop(key, None))

    @property
    def running(self) -> bool:
        return bool(self._running)

    async def wait(self) -> None:
        """Until no transcription runs."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def cancel(self) -> None:
        for task in self._running.values():
            task.cancel()

    async def _run(self, item: Message, index: int, pcm: bytes) -> None:
        part = item.content[index]
        assert isinstance(part, InputAudioPart)
        try:
            transcript, labels = await self._transcribe(pcm)
        except EventError as problem:
            part.transcript = ""
            await self._emit(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item.id,
                    "content_index": index,
                    "error": {
                        "type": problem.kind,
                        "code": problem.code,
                        "message": problem.message,
                        "param": problem.param,
                    },
                }
            )
            return
        part.transcript = transcript
        # The transcript whole as one delta: /v1/audio/transcriptions answers whole (whisper.cpp),
        # so there are no earlier pieces to send; a client reading deltas still gets the text.
        await self._emit(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item.id,
                "content_index": index,
                "delta": transcript,
            }
        )
        await self._emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": index,
                "transcript": transcript,
                **labels,
            }
        )

    async def _transcribe(self, pcm: bytes) -> tuple[str, dict[str, Any]]:
        """The transcript, and the emotion and sound-event labels when the options `include` them."""
        options = self._options() or {}
        fields = [("model", str(options.get("model") or self._model)), ("response_format", "json")]
        for name in ("language", "prompt"):
            if isinstance(options.get(name), str):
                fields.append((name, options[name]))
        # Tantra's extension: `include: ["emotion", "audio_events"]` in the transcription options.
        include = options.get("include")
        for kind in include if isinstance(include, list) else []:
            fields.append(("include[]", str(kind)))
        boundary = uuid.uuid4().hex
        body = multipart_body(
            boundary, fields, wav_header(len(pcm)) + pcm, filename="audio.wav", content_type="audio/wav"
        )
        async with self._loopback.post(
            "/v1/audio/transcriptions",
            body,
            asyncio.Event(),
            content_type=f"multipart/form-data; boundary={boundary}",
        ) as answer:
            raw = await read_all(answer.chunks)
        payload = orjson.loads(raw) if raw else {}
        if answer.status != 200:
            raise failure_of(payload, answer.status)
        labels = {kind: payload[kind] for kind in _LABELS if kind in payload}
        return str(payload.get("text", "")).strip(), labels
