"""A transcript in the shapes OpenAI answers with: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import Response

from adapters.stt import AnalysisResult, Segment, Transcript
from gateway.protocol.audio import (
    DurationUsage,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)
from gateway.services.transcript_analysis import with_analysis


def render(
    transcript: Transcript,
    response_format: str,
    *,
    task: str,
    analysis: Mapping[str, AnalysisResult] | None = None,
) -> Response:
    """The answer in OpenAI's shapes: json, text, srt, vtt, verbose_json; with `analysis`, json and
    verbose_json carry its labels (Tantra's `include[]` extension)."""
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
    if analysis:
        body = with_analysis(body, analysis)
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
