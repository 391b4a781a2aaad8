"""Tantra's extension on /v1/audio/transcriptions: `include[]=emotion` and `include[]=audio_events`
add the labels of audio-classification checkpoints (adapters/stt/analyzer.py) to json and
verbose_json answers, for the whole audio and, in verbose_json, for each segment; docs/audio.md."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.stt import AnalysisResult, AudioAnalyzer, AudioLabel, DecodedAudio, Transcript
from gateway.errors import InvalidRequest
from gateway.protocol.audio import TranscriptionRequest

# Which setting names the checkpoint of each kind, for the 400 that says it is missing.
SETTING_OF = {"emotion": "TANTRA_AUDIO_EMOTION_MODEL", "audio_events": "TANTRA_AUDIO_EVENTS_MODEL"}


def check_include(fields: TranscriptionRequest, analyzer: AudioAnalyzer | None) -> None:
    """The labels asked for can be given, in the format asked for; 400 naming what is missing."""
    if not fields.include:
        return
    if fields.stream or fields.response_format not in ("json", "verbose_json"):
        raise InvalidRequest(
            "`include[]` emotion and audio_events need `response_format` json or verbose_json, not streamed.",
            param="include",
        )
    configured = analyzer.checkpoints if analyzer is not None else {}
    for kind in fields.include:
        if kind not in configured:
            raise InvalidRequest(
                f"`include[]={kind}` needs an audio-classification checkpoint: set {SETTING_OF[kind]} "
                "(and install the `analysis` extra).",
                param="include",
                code="analysis_unavailable",
            )


async def analyze_transcript(
    analyzer: AudioAnalyzer | None, include: Sequence[str], pcm: DecodedAudio, transcript: Transcript
) -> dict[str, AnalysisResult]:
    """Each kind asked for, overall and per whisper segment (run side by side)."""
    if analyzer is None or not include:
        return {}
    spans = [(segment.start, segment.end) for segment in transcript.segments]
    kinds = list(dict.fromkeys(include))
    results = await asyncio.gather(*(analyzer.analyze(kind, pcm.samples, spans) for kind in kinds))
    return dict(zip(kinds, results, strict=True))


def labels_json(labels: Sequence[AudioLabel]) -> list[dict[str, Any]]:
    return [{"label": label.label, "score": label.score} for label in labels]


def with_analysis(body: dict[str, Any], analysis: Mapping[str, AnalysisResult]) -> dict[str, Any]:
    """`body` (json or verbose_json) with each kind's labels overall and on each of its segments."""
    for kind, result in analysis.items():
        body[kind] = labels_json(result.overall)
        for segment, labels in zip(body.get("segments") or [], result.spans, strict=False):
            segment[kind] = labels_json(labels)
    return body
