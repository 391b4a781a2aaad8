"""Speech to text behind /v1/audio/transcriptions and /v1/audio/translations: the one admission,
the multipart upload (capped while it arrives), decode, the audio's seconds reserved, transcribe
off the event loop, and the answer in the format asked for (or an SSE stream)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters import MediaError
from adapters.stt import (
    AudioAnalyzer,
    DecodedAudio,
    Diarizer,
    Segment,
    TranscribeOptions,
    Transcriber,
    TranscriberBusy,
    Transcript,
)
from gateway.admission import Admission, Outcome, Ticket
from gateway.admission.form import read_upload
from gateway.errors import APIError, InvalidRequest, ModelNotFound, sse_error_event
from gateway.http.sse import sse_event
from gateway.limits import Estimate
from gateway.media.service import as_api_error, as_api_errors
from gateway.protocol.audio import (
    DurationUsage,
    TranscriptionRequest,
    TranscriptTextDelta,
    TranscriptTextDone,
)
from gateway.protocol.validation import format_param
from gateway.services.diarized import (
    Diarized,
    check_diarization_fields,
    decode_references,
    render_diarized,
    transcribe_diarized,
)
from gateway.services.transcript_analysis import analyze_transcript, check_include
from gateway.services.transcript_formats import render
from gateway.services.transcription_upstream import UpstreamTranscription

_LIST_FIELDS = ("timestamp_granularities", "known_speaker_names", "known_speaker_references", "include")
# A known speaker's clip arrives as a data URL in a form field: up to 10 s of audio, base64.
_MAX_FIELD_BYTES = 4 * 1024 * 1024


class TranscriptionBusy(APIError):
    status = 503
    type = "server_error"
    code = "transcription_busy"


class TranscriptionService:
    def __init__(
        self,
        transcriber: Transcriber | None,
        model_names: Sequence[str],
        admission: Admission,
        *,
        max_upload_bytes: int,
        diarizer: Diarizer | None = None,
        analyzer: AudioAnalyzer | None = None,
        upstream: UpstreamTranscription | None = None,
    ) -> None:
        # Models not among `model_names` go to an upstream serving them (vLLM's Whisper), if any.
        self.upstream = upstream
        self.transcriber = transcriber
        self.diarizer = diarizer if transcriber is not None else None
        self.analyzer = analyzer if transcriber is not None else None
        self.model_names = tuple(model_names) if transcriber is not None else ()
        self._admission = admission
        self._max_upload_bytes = max_upload_bytes
        self._created = int(time.time())

    async def close(self) -> None:
        if self.diarizer is not None:
            await self.diarizer.close()
        if self.analyzer is not None:
            await self.analyzer.close()

    def cards(self) -> list[dict[str, Any]]:
        """The transcription models, for /v1/models."""
        return [
            {"id": name, "object": "model", "created": self._created, "owned_by": "tantra"}
            for name in self.model_names
        ]

    def card_for(self, model: str) -> dict[str, Any] | None:
        return next((card for card in self.cards() if card["id"] == model), None)

    async def handle(self, request: Request, *, translate: bool) -> Response:
        async with self._admission.enter(request, request.url.path) as ticket:
            with as_api_errors():
                return await self._transcribe(ticket, translate)

    async def _transcribe(self, ticket: Ticket, translate: bool) -> Response:
        with ticket.stage("preprocess"):
            upload, values = await read_upload(
                ticket.request,
                self._max_upload_bytes,
                list_fields=_LIST_FIELDS,
                max_field_bytes=_MAX_FIELD_BYTES,
            )
            fields = _parse_fields(values, translate=translate)
            upstream_model = await self._upstream_model(fields)
            ticket.use_model(upstream_model or fields.model, stream=fields.stream)
        await ticket.reserve(Estimate(0, 0, 0))
        if upstream_model is not None:
            assert self.upstream is not None
            return await self.upstream.forward(ticket, upstream_model, upload, values, self.transcriber)
        assert self.transcriber is not None
        pcm = await self.transcriber.decode(upload, param="file")
        # Its length is known now: the audio's seconds are reserved before whisper runs.
        await ticket.reserve_audio(pcm.seconds)
        options = TranscribeOptions(
            language=None if translate else fields.language,
            prompt=fields.prompt,
            temperature=fields.temperature,
            translate=translate,
            word_timestamps="word" in fields.timestamp_granularities,
        )
        if fields.response_format == "diarized_json":
            voices = await decode_references(
                self.transcriber, fields.known_speaker_names, fields.known_speaker_references
            )
            return await self._diarized(ticket, pcm, options, voices, stream=fields.stream)
        if fields.stream:
            ticket.tab.audio_seconds = pcm.seconds
            ticket.defer()
            return self._stream(pcm, options, ticket)
        try:
            transcript = await self.transcriber.transcribe(pcm, options)
        except TranscriberBusy as exc:
            raise TranscriptionBusy(f"{exc} Try again shortly.", headers={"retry-after": "1"}) from None
        analysis = await analyze_transcript(self.analyzer, fields.include, pcm, transcript)
        ticket.tab.audio_seconds = transcript.duration_s
        ticket.settle(Outcome.COMPLETED)
        task = "translate" if translate else "transcribe"
        response = render(transcript, fields.response_format, task=task, analysis=analysis)
        response.headers.update(ticket.limit_headers)
        return response

    def _stream(self, pcm: DecodedAudio, options: TranscribeOptions, ticket: Ticket) -> StreamingResponse:
        assert self.transcriber is not None
        return _event_stream(_text_events(self.transcriber.stream(pcm, options)), ticket)

    async def _diarized(
        self,
        ticket: Ticket,
        pcm: DecodedAudio,
        options: TranscribeOptions,
        voices: list[tuple[str, np.ndarray]],
        *,
        stream: bool,
    ) -> Response:
        assert self.transcriber is not None and self.diarizer is not None
        work = transcribe_diarized(self.transcriber, self.diarizer, pcm, options, voices)
        ticket.tab.audio_seconds = pcm.seconds
        if stream:
            ticket.defer()
            return _event_stream(_diarized_events(work), ticket)
        try:
            diarized = await work
        except TranscriberBusy as exc:
            raise TranscriptionBusy(f"{exc} Try again shortly.", headers={"retry-after": "1"}) from None
        ticket.settle(Outcome.COMPLETED)
        response = render_diarized(diarized)
        response.headers.update(ticket.limit_headers)
        return response

    async def _upstream_model(self, fields: TranscriptionRequest) -> str | None:
        """The upstream's model id when an upstream serves this model, else None once the fields are
        checked for whisper.cpp."""
        if fields.model not in self.model_names and self.upstream is not None:
            model = await self.upstream.check(fields)
            if model is not None:
                return model
        check_diarization_fields(fields, self.diarizer)
        check_include(fields, self.analyzer)
        self._check_model(fields.model)
        return None

    def _check_model(self, model: str) -> None:
        if model not in self.model_names:
            hint = (
                f" Speech models here: {', '.join(self.model_names)}."
                if self.model_names
                else " No speech model is configured (TANTRA_AUDIO_WHISPER_MODEL)."
            )
            raise ModelNotFound(
                f"The model `{model}` does not exist or you do not have access to it.{hint}", param="model"
            )


async def _text_events(stream: AsyncGenerator[Segment | Transcript, None]) -> AsyncIterator[BaseModel]:
    """`transcript.text.delta` per whisper segment, then `transcript.text.done`."""
    try:
        async for item in stream:
            if isinstance(item, Segment):
                if item.text:
                    yield TranscriptTextDelta(delta=item.text)
                continue
            yield TranscriptTextDone(text=item.text, usage=DurationUsage(seconds=item.duration_s))
    finally:
        await stream.aclose()


async def _diarized_events(work: Awaitable[Diarized]) -> AsyncIterator[BaseModel]:
    """`transcript.text.segment` per speaker turn, then `transcript.text.done`."""
    diarized = await work
    for segment in diarized.segments:
        yield segment
    seconds = diarized.transcript.duration_s
    yield TranscriptTextDone(text=diarized.transcript.text, usage=DurationUsage(seconds=seconds))


def _event_stream(events: AsyncIterator[BaseModel], ticket: Ticket) -> StreamingResponse:
    """The events as SSE; a failure mid-way is an error event, and the ticket settles at the end."""

    async def sse() -> AsyncIterator[bytes]:
        status, outcome = None, Outcome.CLIENT_CLOSED
        try:
            async for event in events:
                yield sse_event(event)
                if isinstance(event, TranscriptTextDone):
                    outcome = Outcome.COMPLETED
        except (MediaError, TranscriberBusy) as exc:
            error = (
                as_api_error(exc)
                if isinstance(exc, MediaError)
                else TranscriptionBusy(f"{exc} Try again shortly.")
            )
            status, outcome = error.status, Outcome.FAILED
            yield sse_error_event(error)
        finally:
            ticket.settle(outcome, status=status)

    return StreamingResponse(
        sse(), media_type="text/event-stream", headers={"cache-control": "no-cache", **ticket.limit_headers}
    )


def _parse_fields(values: dict[str, Any], *, translate: bool = False) -> TranscriptionRequest:
    try:
        fields = TranscriptionRequest.model_validate(_nested_chunking(values))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        # A union's member is named in the location too (`literal['auto']`, `ServerVadChunking`).
        loc = tuple(
            part for part in error["loc"] if isinstance(part, str) and part.isidentifier() and part.islower()
        )
        param = format_param(loc) or None
        if error["type"] == "missing":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        raise InvalidRequest(
            f"Invalid value for '{param}': {error['msg']} (got {error.get('input')!r}).", param=param
        ) from None
    if fields.timestamp_granularities and fields.response_format != "verbose_json":
        raise InvalidRequest(
            "`timestamp_granularities[]` needs `response_format` verbose_json.",
            param="timestamp_granularities",
        )
    if fields.stream and fields.response_format not in ("json", "text", "diarized_json"):
        raise InvalidRequest(
            "A streamed transcription sends text events: `response_format` must be json, text or "
            "diarized_json.",
            param="response_format",
        )
    if translate and fields.response_format == "diarized_json":
        raise InvalidRequest("A translation is not diarized.", param="response_format")
    return fields


def _nested_chunking(values: dict[str, Any]) -> dict[str, Any]:
    """`chunking_strategy[type]=server_vad` (how SDKs send an object in a form) as one object."""
    nested = {
        name[len("chunking_strategy[") : -1]: value
        for name, value in values.items()
        if name.startswith("chunking_strategy[") and name.endswith("]")
    }
    if not nested:
        return values
    plain = {name: value for name, value in values.items() if not name.startswith("chunking_strategy[")}
    return {**plain, "chunking_strategy": nested}
