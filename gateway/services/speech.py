"""POST /v1/audio/speech: authenticate, validate, check the model and voice, reserve the key's limits,
then stream the audio as the synthesizer makes it, and settle what the request used."""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from adapters import MediaError
from adapters.tts import CONTENT_TYPES, Synthesizer
from adapters.tts.audio import SAMPLE_RATE
from gateway.admission import (
    Gate,
    admitting,
    check_allowed,
    load_json,
    open_tab,
    read_body,
    stage,
    validate,
)
from gateway.errors import (
    APIError,
    InvalidRequest,
    ModelNotFound,
    sse_error_event,
)
from gateway.limits import Demand, Estimate
from gateway.limits.accounting import Accountant, Tab
from gateway.media.service import as_api_error, as_api_errors
from gateway.observability import RequestRecord, bind_request, record_of
from gateway.protocol import SpeechAudioDelta, SpeechAudioDone, SpeechRequest
from gateway.protocol.speech import SpeechUsage
from gateway.services.relay import while_connected
from gateway.settings.reload import LiveConfig

PATH = "/v1/audio/speech"
# Input characters count against token limits the way prompts do when estimated: four to a token.
_CHARS_PER_TOKEN = 4
_log = logging.getLogger("tantra.tts")

Outcome = Literal["completed", "client_closed", "failed"]


class SpeechService:
    def __init__(
        self,
        synthesizer: Synthesizer,
        gate: Gate,
        accountant: Accountant,
        *,
        model: str,
        aliases: Sequence[str],
        max_input_chars: int,
        max_body_bytes: int,
        live: LiveConfig[Any] | None = None,
    ) -> None:
        self.synthesizer = synthesizer
        self._gate = gate
        self._accountant = accountant
        self.model = model
        self._names = {model, *aliases}
        self._max_input_chars = max_input_chars
        self._max_body_bytes = max_body_bytes
        self._live = live
        self._created = int(time.time())

    def cards(self) -> list[dict[str, Any]]:
        """The speech model as /v1/models lists it (its OpenAI aliases answer for it, unlisted)."""
        return [{"id": self.model, "object": "model", "created": self._created, "owned_by": "tantra"}]

    def card_for(self, model: str) -> dict[str, Any] | None:
        return self.cards()[0] if self.knows(model) else None

    def knows(self, model: str) -> bool:
        return model in self._names

    async def handle(self, request: Request) -> Response:
        record = record_of(request.state)
        config = self._live.current if self._live is not None else None
        principal = await self._gate.identify(request, record, config)
        tab = open_tab(self._accountant, principal, request, PATH)
        tab.model = self.model
        with admitting(tab, record), as_api_errors():
            with stage(record, "preprocess"):
                limit = config.max_body_bytes if config is not None else self._max_body_bytes
                parsed = validate(SpeechRequest, load_json(await read_body(request, limit)))
                self._check(parsed)
                check_allowed(self.model, principal)
                voice = await self.synthesizer.voice(parsed.voice_name)
            tokens = math.ceil(len(parsed.input) / _CHARS_PER_TOKEN)
            with stage(record, "rate_limit"):
                cost = self._accountant.prices.cost_micros(self.model, tokens, 0)
                reservation = await self._accountant.limiter.reserve(principal.scopes(), Demand(tokens, cost))
            tab.hold(reservation, Estimate(tokens, 0, tokens))
            tab.stream = parsed.stream_format == "sse"
            if record is not None:
                record.model, record.stream = self.model, tab.stream
                bind_request(model=self.model)
            spoken = _Spoken()
            audio = self.synthesizer.stream(
                parsed.input, voice, parsed.response_format, parsed.speed, on_samples=spoken.add
            )
            # The first sentence is spoken before the answer starts: an engine that cannot speak
            # gets an error status, not a 200 with an empty body.
            first = await _first(audio)
        usage = SpeechUsage(input_tokens=tokens, output_tokens=0, total_tokens=tokens)
        return AudioStream(
            first,
            audio,
            sse=usage if parsed.stream_format == "sse" else None,
            media_type=CONTENT_TYPES[parsed.response_format],
            headers=reservation.headers,
            on_close=lambda outcome: _settle(tab, outcome, tokens, record, spoken.seconds),
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


def _settle(tab: Tab, outcome: Outcome, tokens: int, record: RequestRecord | None, seconds: float) -> None:
    status = {"completed": 200, "client_closed": 499, "failed": 500}[outcome]
    # Audio spoken, in the ledger's audio_seconds: this endpoint hears none, and has no audio limit.
    tab.audio_seconds = seconds
    tab.close(status=status, outcome=outcome, usage={"prompt_tokens": tokens, "completion_tokens": 0})
    if record is not None:
        record.outcome = outcome
        record.use(prompt_tokens=tokens, completion_tokens=0)
        if outcome == "failed":
            record.error_type = "server_error"


class AudioStream(Response):
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
        # A Response subclass only so that FastAPI hands it to the server untouched; no length.
        self.status_code = 200
        self.background = None
        content_type = "text/event-stream" if sse is not None else media_type
        self.raw_headers = [
            (b"content-type", content_type.encode()),
            (b"cache-control", b"no-cache"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
        ]
        self._first = first
        self._rest = rest
        self._sse = sse
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome: Outcome = "client_closed"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            outcome = await while_connected(receive, self._pump(send)) or outcome
        finally:
            await self._rest.aclose()
            self._on_close(outcome)

    async def _pump(self, send: Send) -> Outcome:
        outcome: Outcome = "completed"
        try:
            await self._send(send, self._first)
            async for chunk in self._rest:
                await self._send(send, chunk)
        except Exception as exc:
            _log.exception("speech synthesis failed mid-stream")
            outcome = "failed"
            if self._sse is not None:
                error = as_api_error(exc) if isinstance(exc, MediaError) else _mid_stream_error()
                await send({"type": "http.response.body", "body": sse_error_event(error), "more_body": True})
        tail = b""
        if self._sse is not None and outcome == "completed":
            tail = _event(SpeechAudioDone(usage=self._sse).model_dump())
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return outcome

    async def _send(self, send: Send, chunk: bytes) -> None:
        if not chunk:
            return
        if self._sse is not None:
            chunk = _event(SpeechAudioDelta(audio=base64.b64encode(chunk).decode()).model_dump())
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _mid_stream_error() -> APIError:
    return APIError("Speech synthesis failed while streaming; the audio is incomplete.")
