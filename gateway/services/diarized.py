"""`response_format: diarized_json` on /v1/audio/transcriptions: who spoke when, with what they said.

The known speakers' clips (`known_speaker_references[]`, data URLs) are checked here, the turns come
from the Diarizer (adapters/stt/diarizer.py) while whisper.cpp transcribes, and whisper's segments
are given to the turn they overlap most. The answer is OpenAI's `TranscriptionDiarized`, or with
`stream=true` one `transcript.text.segment` event per turn and `transcript.text.done`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from starlette.responses import Response

from adapters.stt import DecodedAudio, Diarizer, SpeakerTurn, TranscribeOptions, Transcriber, Transcript
from gateway.errors import InvalidRequest
from gateway.protocol.audio import DiarizedSegment, DurationUsage, TranscriptionDiarized, TranscriptionRequest

MAX_SPEAKERS = 4  # OpenAI's limit on known speakers
REFERENCE_SECONDS = (2.0, 10.0)  # as OpenAI asks of each reference clip
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[^;,]*)*;base64,(?P<data>.*)", re.S)


@dataclass(frozen=True)
class Diarized:
    transcript: Transcript
    segments: list[DiarizedSegment]


def check_diarization_fields(fields: TranscriptionRequest, diarizer: Diarizer | None) -> None:
    """The known-speaker fields make sense together, and for the format asked; 400 naming the field."""
    names, references = fields.known_speaker_names, fields.known_speaker_references
    if fields.response_format != "diarized_json":
        if names or references:
            param = "known_speaker_names" if names else "known_speaker_references"
            raise InvalidRequest(f"`{param}[]` needs `response_format` diarized_json.", param=param)
        return
    if diarizer is None:
        raise InvalidRequest(
            "Speaker diarization is not available on this gateway (it needs the `diarization` extra "
            "and TANTRA_AUDIO_DIARIZATION_ENABLED).",
            param="response_format",
            code="diarization_unavailable",
        )
    if len(references) > MAX_SPEAKERS:
        raise InvalidRequest(
            f"At most {MAX_SPEAKERS} `known_speaker_references[]` are accepted (got {len(references)}).",
            param="known_speaker_references",
        )
    if len(names) != len(references):
        raise InvalidRequest(
            f"`known_speaker_names[]` ({len(names)}) and `known_speaker_references[]` ({len(references)}) "
            "must name and give the same speakers, one name per clip.",
            param="known_speaker_names",
        )
    for index, name in enumerate(names):
        if not name.strip() or len(name) > 64:
            raise InvalidRequest(
                "Each known speaker name must be 1 to 64 characters.", param=f"known_speaker_names[{index}]"
            )
    if len(set(names)) != len(names):
        raise InvalidRequest("The known speaker names must differ.", param="known_speaker_names")


def reference_bytes(references: Sequence[str]) -> list[bytes]:
    """Each `known_speaker_references[]` data URL's audio bytes; 400 naming the one that is not one."""
    clips: list[bytes] = []
    for index, url in enumerate(references):
        match = _DATA_URL.fullmatch(url.strip())
        data = None
        if match is not None:
            try:
                data = base64.b64decode(match["data"], validate=True)
            except (binascii.Error, ValueError):
                data = None
        if not data:
            raise InvalidRequest(
                "Each known speaker reference must be a base64 data URL of an audio clip "
                "(`data:audio/wav;base64,...`).",
                param=f"known_speaker_references[{index}]",
                code="invalid_audio",
            )
        clips.append(data)
    return clips


async def decode_references(
    transcriber: Transcriber, names: Sequence[str], references: Sequence[str]
) -> list[tuple[str, np.ndarray]]:
    """(name, 16 kHz samples) of each known speaker, each clip 2-10 s long."""
    voices: list[tuple[str, np.ndarray]] = []
    shortest, longest = REFERENCE_SECONDS
    for index, (name, data) in enumerate(zip(names, reference_bytes(references), strict=True)):
        param = f"known_speaker_references[{index}]"
        clip = await transcriber.decode(data, param=param, max_seconds=longest)
        if clip.seconds < shortest:
            raise InvalidRequest(
                f"A known speaker reference must last {shortest:g} to {longest:g} s; this one lasts "
                f"{clip.seconds:.1f} s.",
                param=param,
                code="invalid_audio",
            )
        voices.append((name, clip.samples))
    return voices


async def transcribe_diarized(
    transcriber: Transcriber,
    diarizer: Diarizer,
    pcm: DecodedAudio,
    options: TranscribeOptions,
    voices: Sequence[tuple[str, np.ndarray]],
) -> Diarized:
    """whisper.cpp and the diarizer at once, each in its own workers; their results joined. The
    first failure is raised as it is (not in a group) and the other half is cancelled."""
    transcribing = asyncio.ensure_future(transcriber.transcribe(pcm, options))
    try:
        turns = await diarizer.diarize(pcm.samples, voices)
        transcript = await transcribing
    finally:
        if not transcribing.done():
            transcribing.cancel()
            with contextlib.suppress(BaseException):
                await transcribing
    return Diarized(transcript, with_text(turns, transcript))


def with_text(turns: Sequence[SpeakerTurn], transcript: Transcript) -> list[DiarizedSegment]:
    """Each turn as a segment with the text of the whisper segments that overlap it most (one that
    overlaps none goes to the nearest turn)."""
    texts: list[list[str]] = [[] for _ in turns]
    for segment in transcript.segments:
        if not turns or not segment.text.strip():
            continue
        overlaps = [min(segment.end, t.end) - max(segment.start, t.start) for t in turns]
        best = int(np.argmax(overlaps))
        if overlaps[best] <= 0:
            middle = (segment.start + segment.end) / 2
            best = int(np.argmin([abs((t.start + t.end) / 2 - middle) for t in turns]))
        texts[best].append(segment.text.strip())
    return [
        DiarizedSegment(
            id=f"seg_{number:03d}",
            start=round(turn.start, 2),
            end=round(turn.end, 2),
            text=" ".join(texts[number]),
            speaker=turn.speaker,
        )
        for number, turn in enumerate(turns)
    ]


def render_diarized(diarized: Diarized) -> Response:
    body = TranscriptionDiarized(
        duration=diarized.transcript.duration_s,
        text=diarized.transcript.text,
        segments=diarized.segments,
        usage=DurationUsage(seconds=diarized.transcript.duration_s),
    )
    return Response(orjson.dumps(body.model_dump()), media_type="application/json")
