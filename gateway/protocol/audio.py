"""/v1/audio/transcriptions and /v1/audio/translations: OpenAI's multipart fields and answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
Granularity = Literal["word", "segment"]


class ServerVadChunking(BaseModel):
    """`chunking_strategy` as an object (sent as `chunking_strategy[type]` and so on in a form)."""

    type: Literal["server_vad"]
    prefix_padding_ms: Annotated[int, Field(ge=0)] | None = None
    silence_duration_ms: Annotated[int, Field(ge=0)] | None = None
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class TranscriptionRequest(BaseModel):
    """The form fields (`file` is the upload itself). Translations take the same less `language`,
    `timestamp_granularities[]` and `stream`."""

    model: str
    language: str | None = None
    prompt: str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    response_format: TranscriptFormat = "json"
    timestamp_granularities: list[Granularity] = Field(default_factory=list)
    stream: bool = False
    # Diarization (`diarized_json`): up to 4 named voices, each a data URL of a 2-10 s clip.
    known_speaker_names: list[str] = Field(default_factory=list)
    known_speaker_references: list[str] = Field(default_factory=list)
    chunking_strategy: Literal["auto"] | ServerVadChunking | None = None
    # Tantra's extension: labels of audio-classification checkpoints (json and verbose_json).
    include: list[Literal["emotion", "audio_events"]] = Field(default_factory=list)


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    text: str
    usage: DurationUsage | None = None


class TranscriptionVerbose(BaseModel):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    usage: DurationUsage | None = None


class DiarizedSegment(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str


class TranscriptionDiarized(BaseModel):
    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]
    usage: DurationUsage | None = None


class TranscriptTextDelta(BaseModel):
    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(BaseModel):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: DurationUsage | None = None


def multipart_schema(*, translation: bool) -> dict[str, object]:
    """The request body as OpenAPI describes a multipart upload (validated by hand in the route)."""
    fields: dict[str, object] = {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The audio: wav, mp3, ogg, flac, webm, m4a.",
        },
        "model": {"type": "string", "example": "whisper-1"},
        "prompt": {"type": "string"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "response_format": {"type": "string", "enum": ["json", "text", "srt", "vtt", "verbose_json"]},
        "include[]": {
            "type": "array",
            "items": {"type": "string", "enum": ["emotion", "audio_events"]},
            "description": "Tantra's extension: emotion and sound-event labels (json, verbose_json).",
        },
    }
    if not translation:
        fields["response_format"] = {
            "type": "string",
            "enum": ["json", "text", "srt", "vtt", "verbose_json", "diarized_json"],
        }
        fields["known_speaker_names[]"] = {"type": "array", "items": {"type": "string"}, "maxItems": 4}
        fields["known_speaker_references[]"] = {
            "type": "array",
            "items": {"type": "string", "description": "A data URL of a 2-10 s clip of the speaker."},
            "maxItems": 4,
        }
        fields["chunking_strategy"] = {"type": "string", "enum": ["auto"]}
    if not translation:
        fields["language"] = {"type": "string", "description": "ISO-639-1, e.g. `en`."}
        fields["timestamp_granularities[]"] = {
            "type": "array",
            "items": {"type": "string", "enum": ["word", "segment"]},
        }
        fields["stream"] = {"type": "boolean"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file", "model"], "properties": fields}
                }
            },
        }
    }
