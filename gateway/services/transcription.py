"""Speech to text behind /v1/audio/transcriptions and /v1/audio/translations: the admission every
endpoint shares (gateway/admission.py), the multipart upload read (capped while it arrives), limits,
decode, the audio's seconds reserved, transcribe off the event loop, and the answer shaped in the
format asked for (json, text, srt, vtt, verbose_json, or an SSE stream)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message

from adapters import MediaError
from adapters.stt import Segment, TranscribeOptions, Transcriber, TranscriberBusy, Transcript
from gateway.admission import Gate, admitting, check_allowed, open_tab, stage
from gateway.errors import APIError, InvalidRequest, ModelNotFound, PayloadTooLarge
from gateway.limits import Demand, Estimate
from gateway.limits.accounting import Accountant, Tab
from gateway.media.service import as_api_error, as_api_errors
from gateway.observability import bind_request, get_logger, record_of
from gateway.protocol.audio import (
    DurationUsage,
    TranscriptionRequest,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
    TranscriptTextDelta,
    TranscriptTextDone,
)
from gateway.protocol.validation import format_param
from gateway.settings.reload import LiveConfig

_log = get_logger("tantra.speech")


class TranscriptionBusy(APIError):
    status = 503
    type = "server_error"
    code = "transcription_busy"


class TranscriptionService:
    def __init__(
        self,
        transcriber: Transcriber | None,
        model_names: Sequence[str],
        gate: Gate,
        accountant: Accountant,
        *,
        max_upload_bytes: int,
        live: LiveConfig[Any] | None = None,
    ) -> None:
        self.transcriber = transcriber
        self.model_names = tuple(model_names) if transcriber is not None else ()
        self._gate = gate
        self._accountant = accountant
        self._max_upload_bytes = max_upload_bytes
        self._live = live
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
        record = record_of(request.state)
        config = self._live.current if self._live is not None else None
        principal = await self._gate.identify(request, record, config)
        tab = open_tab(self._accountant, principal, request, request.url.path)
        with admitting(tab, record), as_api_errors():
            with stage(record, "preprocess"):
                upload, fields = await self._read_form(request)
                tab.model = fields.model
                self._check_model(fields.model)
                check_allowed(fields.model, principal)
            with stage(record, "rate_limit"):
                reservation = await self._accountant.limiter.reserve(principal.scopes(), Demand(0))
            tab.hold(reservation, Estimate(0, 0, 0))
            tab.stream = fields.stream
            if record is not None:
                record.model, record.stream = fields.model, fields.stream
                bind_request(model=fields.model)
            assert self.transcriber is not None
            pcm = await self.transcriber.decode(upload, param="file")
            # Its length is known now: the audio's seconds are reserved before whisper runs.
            with stage(record, "rate_limit"):
                tab.hold_audio(await self._accountant.limiter.reserve_audio(principal.scopes(), pcm.seconds))
        options = TranscribeOptions(
            language=None if translate else fields.language,
            prompt=fields.prompt,
            temperature=fields.temperature,
            translate=translate,
            word_timestamps="word" in fields.timestamp_granularities,
        )
        if fields.stream:
            tab.audio_seconds = pcm.seconds
            return self._stream(pcm, options, tab)
        try:
            transcript = await self.transcriber.transcribe(pcm, options)
        except TranscriberBusy as exc:
            tab.close(status=503, outcome="rejected")
            raise TranscriptionBusy(f"{exc} Try again shortly.", headers={"retry-after": "1"}) from None
        except MediaError as exc:
            error = as_api_error(exc)
            tab.close(status=error.status, outcome="rejected" if error.status < 500 else "failed")
            raise error from None
        except BaseException:
            tab.close(status=500, outcome="failed")
            raise
        tab.audio_seconds = transcript.duration_s
        tab.close(status=200, outcome="completed")
        response = render(transcript, fields.response_format, task="translate" if translate else "transcribe")
        response.headers.update(tab.limit_headers)
        return response

    def _stream(self, pcm: Any, options: TranscribeOptions, tab: Tab) -> StreamingResponse:
        assert self.transcriber is not None
        stream = self.transcriber.stream(pcm, options)

        async def events() -> AsyncIterator[bytes]:
            status, outcome = 200, "client_closed"
            try:
                async for item in stream:
                    if isinstance(item, Segment):
                        if item.text:
                            yield _sse(TranscriptTextDelta(delta=item.text).model_dump())
                        continue
                    done = TranscriptTextDone(text=item.text, usage=DurationUsage(seconds=item.duration_s))
                    yield _sse(done.model_dump())
                    outcome = "completed"
            except MediaError as exc:
                error = as_api_error(exc)
                status, outcome = error.status, "failed"
                yield b"data: " + orjson.dumps(error.body()) + b"\n\n"
            finally:
                await stream.aclose()
                tab.close(status=status, outcome=outcome)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", **tab.limit_headers},
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

    async def _read_form(self, request: Request) -> tuple[bytes, TranscriptionRequest]:
        kind = request.headers.get("content-type", "")
        if not kind.lower().startswith("multipart/form-data"):
            raise InvalidRequest(
                "This endpoint takes multipart/form-data (the audio in a `file` part); "
                f"the request's Content-Type is {kind or 'missing'}.",
                code="invalid_content_type",
            )
        limit = self._max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        capped = Request(request.scope, _capped(request.receive, limit))
        try:
            form = await capped.form(max_files=1, max_fields=32)
        except MultiPartException as exc:
            raise InvalidRequest(f"The multipart body could not be read: {exc.message}") from None
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest(
                    "Missing required parameter: 'file' (the audio, as a file part).", param="file"
                )
            data = await upload.read()
            values: dict[str, Any] = {}
            for name, value in form.multi_items():
                if name == "file" or not isinstance(value, str):
                    continue
                if name in ("timestamp_granularities[]", "timestamp_granularities"):
                    values.setdefault("timestamp_granularities", []).append(value)
                else:
                    values[name] = value
        finally:
            await form.close()
        return data, _parse_fields(values)


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


def _capped(receive: Callable[[], Awaitable[Message]], limit: int) -> Callable[[], Awaitable[Message]]:
    """The request's receive, refusing the body once it passes `limit` bytes (a chunked upload
    that declared no length is stopped as it arrives, not after)."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return receive_capped


def _too_large(limit: int) -> APIError:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {limit} bytes.", param="file", code="file_too_large"
    )


def render(transcript: Transcript, response_format: str, *, task: str) -> Response:
    """The answer in OpenAI's shapes: json, text, srt, vtt, verbose_json."""
    if response_format == "text":
        return Response(transcript.text + "\n", media_type="text/plain")
    if response_format == "srt":
        return Response(subtitles(transcript.segments, vtt=False), media_type="text/plain")
    if response_format == "vtt":
        return Response(subtitles(transcript.segments, vtt=True), media_type="text/vtt")
    usage = DurationUsage(seconds=transcript.duration_s)
    if response_format == "verbose_json":
        body: dict[str, Any] = TranscriptionVerbose(
            task="translate" if task == "translate" else "transcribe",
            language=transcript.language,
            duration=transcript.duration_s,
            text=transcript.text,
            segments=[
                TranscriptionSegment(
                    id=s.id,
                    seek=0,
                    start=s.start,
                    end=s.end,
                    text=s.text,
                    tokens=list(s.tokens),
                    temperature=s.temperature,
                    avg_logprob=s.avg_logprob,
                    compression_ratio=s.compression_ratio,
                    no_speech_prob=s.no_speech_prob,
                )
                for s in transcript.segments
            ],
            words=None
            if transcript.words is None
            else [TranscriptionWord(word=w.word, start=w.start, end=w.end) for w in transcript.words],
            usage=usage,
        ).model_dump(exclude_none=True)
    else:
        body = {"text": transcript.text, "usage": usage.model_dump()}
    return Response(orjson.dumps(body), media_type="application/json")


def subtitles(segments: Sequence[Segment], *, vtt: bool) -> str:
    """SubRip (numbered cues, `00:00:01,000`) or WebVTT (`WEBVTT` header, `00:00:01.000`)."""
    blocks: list[str] = ["WEBVTT\n"] if vtt else []
    for number, segment in enumerate((s for s in segments if s.text.strip()), start=1):
        times = f"{_clock(segment.start, vtt)} --> {_clock(segment.end, vtt)}"
        blocks.append(
            f"{times}\n{segment.text.strip()}\n" if vtt else f"{number}\n{times}\n{segment.text.strip()}\n"
        )
    return "\n".join(blocks) + ("" if blocks else "\n")


def _clock(seconds: float, vtt: bool) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{'.' if vtt else ','}{millis:03d}"


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"
