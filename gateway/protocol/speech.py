"""POST /v1/audio/speech: OpenAI's request body for text to speech, and its SSE stream events."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.protocol.common import Strict


class VoiceId(Strict):
    """OpenAI's custom-voice reference; its id is resolved like a voice name."""

    id: Annotated[str, Field(min_length=1)]


class SpeechRequest(Strict):
    model: Annotated[str, Field(min_length=1)]
    # The length limit is the gateway's setting (OpenAI's 4096 by default), checked by the service.
    input: Annotated[str, Field(min_length=1)]
    voice: Annotated[str, Field(min_length=1)] | VoiceId
    # Accepted and ignored: eSpeak NG and Piper voices take no style instructions.
    instructions: Annotated[str, Field(max_length=4096)] | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: Annotated[float, Field(ge=0.25, le=4.0)] = 1.0
    stream_format: Literal["audio", "sse"] = "audio"
    # Tantra's extension: the input's language (ISO 639-1 such as `fr`, or a tag such as `pt-BR`).
    # With one of OpenAI's voice names it picks that language's voice; absent, it is detected.
    language: (
        Annotated[str, Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]
        | None
    ) = None

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceId) else self.voice


class SpeechUsage(Strict):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDelta(Strict):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str  # base64 of the next bytes of the file in `response_format`


class SpeechAudioDone(Strict):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage
