"""Speech to text behind /v1/audio/transcriptions and /v1/audio/translations: the one admission,
the multipart upload (capped while it arrives), decode, the audio's seconds reserved, transcribe
off the event loop, and the answer in the format asked for (or an SSE stream)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters import MediaError
from adapters.stt import DecodedAudio, Segment, TranscribeOptions, Transcriber, TranscriberBusy
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
from gateway.services.transcript_formats import render


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
    ) -> None:
        self.transcriber = transcriber
        self.model_names = tuple(model_names) if transcriber is not None else ()
        self._admission = admission
        self._max_upload_bytes = max_upload_bytes
        self._created = int(time.time())

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
                ticket.request, self._max_upload_bytes, list_fields=("timestamp_granularities",)
            )
            fields = _parse_fields(values)
            self._check_model(fields.model)
            ticket.use_model(fields.model, stream=fields.stream)
        await ticket.reserve(Estimate(0, 0, 0))
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
        if fields.stream:
            ticket.tab.audio_seconds = pcm.seconds
            ticket.defer()
            return self._stream(pcm, options, ticket)
        try:
            transcript = await self.transcriber.transcribe(pcm, options)
        except TranscriberBusy as exc:
            raise TranscriptionBusy(f"{exc} Try again shortly.", headers={"retry-after": "1"}) from None
        ticket.tab.audio_seconds = transcript.duration_s
        ticket.settle(Outcome.COMPLETED)
        response = render(transcript, fields.response_format, task="translate" if translate else "transcribe")
        response.headers.update(ticket.limit_headers)
        return response

    def _stream(self, pcm: DecodedAudio, options: TranscribeOptions, ticket: Ticket) -> StreamingResponse:
        assert self.transcriber is not None
        stream = self.transcriber.stream(pcm, options)

        async def events() -> AsyncIterator[bytes]:
            status, outcome = None, Outcome.CLIENT_CLOSED
            try:
                async for item in stream:
                    if isinstance(item, Segment):
                        if item.text:
                            yield sse_event(TranscriptTextDelta(delta=item.text))
                        continue
                    done = TranscriptTextDone(text=item.text, usage=DurationUsage(seconds=item.duration_s))
                    yield sse_event(done)
                    outcome = Outcome.COMPLETED
            except MediaError as exc:
                error = as_api_error(exc)
                status, outcome = error.status, Outcome.FAILED
                yield sse_error_event(error)
            finally:
                await stream.aclose()
                ticket.settle(outcome, status=status)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", **ticket.limit_headers},
        )

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


def _parse_fields(values: dict[str, Any]) -> TranscriptionRequest:
    try:
        fields = TranscriptionRequest.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(part for part in error["loc"] if isinstance(part, str))
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
    if fields.stream and fields.response_format not in ("json", "text"):
        raise InvalidRequest(
            "A streamed transcription sends text events: `response_format` must be json or text.",
            param="response_format",
        )
    return fields
