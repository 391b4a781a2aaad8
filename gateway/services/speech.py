"""POST /v1/audio/speech: authenticate, validate, check the model and voice, reserve the key's limits,
then stream the audio as the synthesizer makes it, and settle what the request used."""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from adapters import MediaError
from adapters.tts import CONTENT_TYPES, OPENAI_VOICES, Synthesizer, UnsupportedLanguage, Voice, language_code
from adapters.tts.audio import SAMPLE_RATE
from gateway.admission import Admission, Outcome, Ticket
from gateway.errors import APIError, InvalidRequest, ModelNotFound, sse_error_event
from gateway.http.sse import sse_event
from gateway.http.streaming import RawStream, send_chunk
from gateway.limits import Estimate
from gateway.media.service import as_api_error, as_api_errors
from gateway.protocol import SpeechAudioDelta, SpeechAudioDone, SpeechRequest
from gateway.protocol.speech import SpeechUsage
from gateway.services.voice_clips import VoiceCloner, is_custom

PATH = "/v1/audio/speech"
# Input characters count against token limits the way prompts do when estimated: four to a token.
_CHARS_PER_TOKEN = 4
_log = logging.getLogger("tantra.tts")


class SpeechService:
    def __init__(
        self,
        synthesizer: Synthesizer,
        admission: Admission,
        *,
        model: str,
        aliases: Sequence[str],
        max_input_chars: int,
    ) -> None:
        self.synthesizer = synthesizer
        self._admission = admission
        self.model = model
        self._names = {model, *aliases}
        self._max_input_chars = max_input_chars
        self._created = int(time.time())
        # The tenants' custom voices (gateway/voices_setup.py), when the blob store serves them.
        self.custom_voices: VoiceCloner | None = None

    def cards(self) -> list[dict[str, Any]]:
        """The speech model as /v1/models lists it (its OpenAI aliases answer for it, unlisted)."""
        return [{"id": self.model, "object": "model", "created": self._created, "owned_by": "tantra"}]

    def card_for(self, model: str) -> dict[str, Any] | None:
        return self.cards()[0] if self.knows(model) else None

    def knows(self, model: str) -> bool:
        return model in self._names

    async def voices(self, language: str | None) -> dict[str, Any]:
        """GET /v1/audio/voices (Tantra's): the installed voices, of `language` when given, and
        OpenAI's voice names (they speak every language, through the language's own voice)."""
        languages = await self.synthesizer.languages()
        wanted = None if language is None else language_code(language)
        if wanted is not None and wanted not in languages:
            raise UnsupportedLanguage(language or "", ", ".join(languages))
        entries = [e.card() for e in await self.synthesizer.catalog() if wanted in (None, e.language)]
        aliases = [
            {
                "id": name,
                "object": "voice",
                "language": None,
                "backend": None,
                "gender": None,
                "description": f"OpenAI's voice: any language's voice (in English, eSpeak NG's {voice})",
            }
            for name, voice in OPENAI_VOICES.items()
        ]
        return {"object": "list", "languages": languages, "data": aliases + entries}

    async def custom_voice(self, tenant_id: str | None, name: str, *, param: str) -> None:
        """A custom voice's id (`voice_...`) checked to be the tenant's and made speakable (404 for
        an unknown or another tenant's id, 400 where custom voices are not spoken), before any
        synthesis; any other voice name is left to the synthesizer."""
        if not is_custom(name):
            return
        if self.custom_voices is None:
            raise InvalidRequest(
                "Custom voices are not served by this gateway (they need the Files API's blob store).",
                param=param,
                code="custom_voices_unavailable",
            )
        await self.custom_voices.prepare(tenant_id, name, param=param)

    async def handle(self, request: Request) -> Response:
        async with self._admission.enter(request, PATH) as ticket:
            ticket.tab.model = self.model
            with as_api_errors():
                return await self._speak(ticket)

    async def _speak(self, ticket: Ticket) -> Response:
        with ticket.stage("preprocess"):
            _, _, parsed = await ticket.read_json(SpeechRequest)
            self._check(parsed)
            ticket.use_model(self.model, stream=parsed.stream_format == "sse")
            await self.custom_voice(ticket.principal.tenant_id, parsed.voice_name, param="voice")
            voice = await self.synthesizer.voice(
                parsed.voice_name, language=parsed.language, text=parsed.input
            )
        tokens = math.ceil(len(parsed.input) / _CHARS_PER_TOKEN)
        await ticket.reserve(Estimate(tokens, 0, tokens))
        spoken = _Spoken()
        audio = self.synthesizer.stream(
            parsed.input, voice, parsed.response_format, parsed.speed, on_samples=spoken.add
        )
        # The first sentence is spoken before the answer starts: an engine that cannot speak
        # gets an error status, not a 200 with an empty body.
        first = await _first(audio)
        ticket.defer()
        usage = SpeechUsage(input_tokens=tokens, output_tokens=0, total_tokens=tokens)

        def settle(outcome: Outcome) -> None:
            # Audio spoken, in the ledger's audio_seconds: this endpoint hears none, and has no audio limit.
            ticket.tab.audio_seconds = spoken.seconds
            ticket.settle(outcome, usage={"prompt_tokens": tokens, "completion_tokens": 0})

        return AudioStream(
            first,
            audio,
            sse=usage if parsed.stream_format == "sse" else None,
            media_type=CONTENT_TYPES[parsed.response_format],
            headers={**ticket.limit_headers, **voice_headers(voice)},
            on_close=settle,
        )

    def _check(self, parsed: SpeechRequest) -> None:
        if not self.knows(parsed.model):
            raise ModelNotFound(
                f"The model `{parsed.model}` does not exist or is not a text-to-speech model; "
                f"use `{self.model}` (or {', '.join(sorted(self._names - {self.model}))}).",
                param="model",
            )
        if len(parsed.input) > self._max_input_chars:
            raise InvalidRequest(
                f"`input` is {len(parsed.input)} characters long; the maximum is {self._max_input_chars}.",
                param="input",
                code="string_above_max_length",
            )
        if not any(ch.isalnum() for ch in parsed.input):
            raise InvalidRequest("`input` has nothing to speak (no letters or digits).", param="input")


def voice_headers(voice: Voice) -> dict[str, str]:
    """Which voice spoke, and for which language (Tantra's headers; the language is absent when
    the voice spoke its own)."""
    headers = {"x-tantra-voice": voice.name, "x-tantra-voice-backend": voice.backend.name}
    if voice.language is not None:
        headers["x-tantra-language"] = voice.language
    return headers


async def _first(audio: AsyncGenerator[bytes, None]) -> bytes:
    try:
        return await anext(audio)
    except StopAsyncIteration:
        return b""
    except BaseException:
        await audio.aclose()
        raise


class _Spoken:
    """How much audio a request's synthesis made, for its ledger row."""

    def __init__(self) -> None:
        self.samples = 0

    def add(self, samples: int) -> None:
        self.samples += samples

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE


class AudioStream(RawStream):
    """Audio bytes sent as the synthesizer makes them (or, with `sse`, as OpenAI's
    `speech.audio.delta` events and a closing `speech.audio.done`). A client that leaves stops the
    synthesis at once; a failure mid-stream ends an audio stream early, or sends an SSE error event."""

    def __init__(
        self,
        first: bytes,
        rest: AsyncGenerator[bytes, None],
        *,
        sse: SpeechUsage | None,
        media_type: str,
        headers: dict[str, str],
        on_close: Callable[[Outcome], None],
    ) -> None:
        content_type = "text/event-stream" if sse is not None else media_type
        super().__init__(
            ((b"content-type", content_type.encode()), (b"cache-control", b"no-cache")), headers, on_close
        )
        self._first = first
        self._rest = rest
        self._sse = sse

    async def finish(self) -> None:
        await self._rest.aclose()

    async def pump(self, send: Send) -> Outcome:
        outcome = Outcome.COMPLETED
        try:
            await self._send(send, self._first)
            async for chunk in self._rest:
                await self._send(send, chunk)
        except Exception as exc:
            _log.exception("speech synthesis failed mid-stream")
            outcome = Outcome.FAILED
            if self._sse is not None:
                error = as_api_error(exc) if isinstance(exc, MediaError) else _mid_stream_error()
                await send_chunk(send, sse_error_event(error))
        tail = b""
        if self._sse is not None and outcome is Outcome.COMPLETED:
            tail = sse_event(SpeechAudioDone(usage=self._sse))
        await send_chunk(send, tail, more=False)
        return outcome

    async def _send(self, send: Send, chunk: bytes) -> None:
        if not chunk:
            return
        if self._sse is not None:
            chunk = sse_event(SpeechAudioDelta(audio=base64.b64encode(chunk).decode()))
        await send_chunk(send, chunk)


def _mid_stream_error() -> APIError:
    return APIError("Speech synthesis failed while streaming; the audio is incomplete.")
