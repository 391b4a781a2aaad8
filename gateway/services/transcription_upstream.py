"""Speech-to-text models served by an upstream (vLLM serves /v1/audio/transcriptions and
/translations for Whisper checkpoints), beside whisper.cpp: a model that is not one of whisper.cpp's
names goes to the replica serving it, found in the upstream catalogue like any other model, through
the same Dispatcher (routing, retries, breakers) as the pooling family; docs/audio.md.

The upload is sent on as multipart with the client's fields; Tantra's own extensions (diarized_json,
`include[]`, known speakers) and streaming are whisper.cpp's here and refused with a 400.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import orjson
from starlette.responses import Response

from adapters.stt import Transcriber
from gateway.admission import Outcome, Ticket
from gateway.errors import InvalidRequest, ModelNotFound, NotFound
from gateway.http.disconnect import unless_disconnected
from gateway.http.multipart import multipart_body
from gateway.protocol.audio import TranscriptionRequest
from gateway.services.forwarding import usage_of
from gateway.services.pooling import unsupported
from gateway.services.upstream_call import chose, upstream_headers
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.stream import UpstreamRequest

_MEDIA_TYPES = {"text": "text/plain", "srt": "text/plain", "vtt": "text/vtt"}
# Sent on as the client sent them; the rest are whisper.cpp's extensions, refused for an upstream.
# vLLM's own sampling fields (`max_completion_tokens`, `seed`, ...) go too.
_FORWARDED = (
    "model",
    "language",
    "prompt",
    "temperature",
    "response_format",
    "timestamp_granularities",
    "max_completion_tokens",
    "seed",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
)


class UpstreamTranscription:
    """Transcribes with a model an upstream serves; see the module's docstring."""

    def __init__(self, dispatcher: Dispatcher, catalog: ModelCatalog) -> None:
        self._dispatcher = dispatcher
        self._catalog = catalog

    async def check(self, fields: TranscriptionRequest) -> str | None:
        """The model's id in the catalogue (None when no upstream serves it); 400 for what only
        whisper.cpp serves."""
        if not fields.model.isprintable():
            # No upstream serves a name with control characters: not worth a catalogue refresh
            # (which, with every engine down, would answer 503 for a name that can never exist).
            return None
        try:
            card = await self._catalog.resolve(fields.model)
        except ModelNotFound:
            return None
        refused = (
            ("stream", fields.stream),
            ("response_format", fields.response_format == "diarized_json"),
            ("include", bool(fields.include)),
            ("known_speaker_names", bool(fields.known_speaker_names or fields.known_speaker_references)),
        )
        for param, given in refused:
            if given:
                raise InvalidRequest(
                    f"`{param}` is served by the gateway's own speech models, not by `{fields.model}` "
                    "(an upstream's).",
                    param=param,
                    code="unsupported_value",
                )
        return str(card["id"])

    async def forward(
        self,
        ticket: Ticket,
        model: str,
        upload: bytes,
        values: dict[str, Any],
        transcriber: Transcriber | None,
    ) -> Response:
        """The upload to the upstream, its answer back as it sent it; the audio's seconds are the
        ledger's (decoded here when whisper.cpp's decoders run, so `audio_spm` holds too)."""
        seconds: float | None = None
        if transcriber is not None:
            pcm = await transcriber.decode(upload, param="file")
            seconds = pcm.seconds
            await ticket.reserve_audio(seconds)
        boundary = uuid.uuid4().hex
        body = multipart_body(boundary, _fields(values, model), upload)
        headers = {**upstream_headers(ticket), "content-type": f"multipart/form-data; boundary={boundary}"}
        path = ticket.request.url.path
        request = UpstreamRequest(path, body, {"model": model}, model, headers)
        try:
            answer, upstream, served = await unless_disconnected(
                ticket.request.receive, self._dispatcher.answer(request)
            )
        except ModelNotFound:
            raise
        except NotFound:
            raise unsupported(model, path, "speech to text") from None
        chose(ticket, upstream, served)
        if seconds is None:  # no decoder here: the upstream's own count (vLLM's `usage.seconds`)
            heard = (usage_of(answer) or {}).get("seconds")
            seconds = float(heard) if isinstance(heard, int | float) else 0.0
        ticket.tab.audio_seconds = seconds
        ticket.settle(Outcome.COMPLETED)
        return _as_asked(answer, str(values.get("response_format") or "json"), ticket.limit_headers)


def _as_asked(answer: bytes, response_format: str, headers: dict[str, str]) -> Response:
    """The upstream's answer; `text` as OpenAI answers it (plain text) where vLLM sends JSON."""
    if response_format not in _MEDIA_TYPES:
        return Response(answer, media_type="application/json", headers=headers)
    if response_format == "text" and answer.lstrip().startswith(b"{"):
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            answer = str(orjson.loads(answer).get("text", "")).encode() + b"\n"
    return Response(answer, media_type=_MEDIA_TYPES[response_format], headers=headers)


def _fields(values: dict[str, Any], model: str) -> list[tuple[str, str]]:
    fields = [("model", model)]
    for name in _FORWARDED[1:]:
        value = values.get(name)
        if isinstance(value, list):
            fields.extend((f"{name}[]", str(item)) for item in value)
        elif value is not None:
            fields.append((name, str(value)))
    return fields
