"""Spoken answers in chat completions: OpenAI's audio output (`modalities: ["text", "audio"]` with
`audio: {voice, format}`), spoken by the gateway's own text to speech (adapters/tts).

The engine writes the text (`modalities` and `audio` are taken out of what it is sent); the gateway
speaks it under the request's own admission ticket. A JSON answer gets `message.audio` (the whole
answer in the requested format, `content` null as OpenAI's); a stream is `SpokenStream`
(spoken_stream.py). See docs/audio.md, "Spoken answers in chat".
"""

from __future__ import annotations

import base64
import math
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from adapters.tts import (
    AudioFormat,
    Detecting,
    SpeechUnavailable,
    Synthesizer,
    UnknownVoice,
    UnsupportedLanguage,
    Voice,
)
from adapters.tts.audio import SAMPLE_RATE
from gateway.errors import APIError, InvalidRequest
from gateway.limits.accounting import Tab
from gateway.protocol import ChatCompletionRequest

# OpenAI's chat audio formats, as the synthesizer's: `pcm16` is its raw `pcm` (s16le, 24 kHz, mono).
SYNTH_FORMATS: dict[str, AudioFormat] = {
    "wav": "wav",
    "mp3": "mp3",
    "flac": "flac",
    "opus": "opus",
    "aac": "aac",
    "pcm16": "pcm",
}
# The input characters /v1/audio/speech counts as one token; spoken answers are priced the same.
_CHARS_PER_TOKEN = 4
# OpenAI keeps an answer's audio for an hour (for multi-turn use by id); `expires_at` says as much,
# though the gateway keeps nothing (docs/audio.md).
_EXPIRES_S = 3600


@dataclass
class Speaking:
    """One request's spoken answer: voice, format, the audio's id and expiry, and what was spoken."""

    # Without `audio.language`, one of OpenAI's voices finds the answer's language in its text: a
    # JSON answer's whole text, a stream's first sentence whose language is found (Detecting).
    voice: Voice | Detecting
    format: AudioFormat
    id: str
    expires_at: int
    samples: int = 0
    characters: int = 0

    def add(self, samples: int) -> None:
        self.samples += samples

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def usage(self) -> dict[str, Any]:
        """Tantra's `usage.tantra_speech`: what the answer's audio took."""
        return {"seconds": round(self.seconds, 3), "characters": self.characters}


class CustomVoice(Protocol):
    """SpeechService.custom_voice: a custom voice id checked for the tenant and made speakable."""

    async def __call__(self, tenant_id: str | None, name: str, *, param: str) -> None: ...


class ChatSpeech:
    """The synthesizer as chat completions use it: a request's voice, its answer spoken, its account."""

    def __init__(self, synthesizer: Synthesizer, *, model: str, custom: CustomVoice | None = None) -> None:
        self._synthesizer = synthesizer
        self.model = model
        # Checks a custom voice (`voice_...`) is the tenant's and makes it speakable (SpeechService's).
        self._custom = custom

    async def order(self, parsed: ChatCompletionRequest, tenant_id: str | None = None) -> Speaking | None:
        """What the request asked to hear (None: text only); 400 naming `audio.voice` for a voice
        no backend speaks, or `audio.language` (Tantra's) for a language no voice speaks, before the
        engine is asked. Without a language, the answer's text picks it as it is spoken."""
        wanted = parsed.audio_output()
        if wanted is None:
            return None
        if self._custom is not None:
            await self._custom(tenant_id, wanted.voice_name, param="audio.voice")
        try:
            voice = await self._synthesizer.voice(wanted.voice_name, language=wanted.language)
        except UnknownVoice as exc:
            raise InvalidRequest(exc.message, param="audio.voice", code="invalid_value") from None
        except UnsupportedLanguage as exc:
            raise InvalidRequest(exc.message, param="audio.language", code=exc.code) from None
        return Speaking(
            self._synthesizer.detecting(voice),
            SYNTH_FORMATS[wanted.format],
            "audio_" + secrets.token_hex(12),
            int(time.time()) + _EXPIRES_S,
        )

    def audio(self, speaking: Speaking, text: str | AsyncIterable[str]) -> AsyncGenerator[bytes, None]:
        """`text` spoken in the request's format, sentence by sentence as it is made (a text that
        arrives in pieces is spoken as each sentence completes); leaving early stops the synthesis."""
        return self._synthesizer.stream(text, speaking.voice, speaking.format, on_samples=speaking.add)

    async def answer(self, speaking: Speaking, answer: bytes) -> bytes:
        """A JSON chat completion with its text spoken: `message.audio` {id, data, expires_at,
        transcript}, `content` null, and the answer's `usage.tantra_speech`. A choice with no text
        (a tool call) gets no audio, as OpenAI's."""
        body = orjson.loads(answer)
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return answer
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            text = message.get("content")
            if not isinstance(text, str) or not text.strip():
                continue
            speaking.characters += len(text)
            # The language of its whole text (as /v1/audio/speech detects its input), known before
            # it is spoken.
            voice = await self._synthesizer.resolve(speaking.voice, text)
            audio = self._synthesizer.stream(text, voice, speaking.format, on_samples=speaking.add)
            data = b"".join([chunk async for chunk in audio])
            message["content"] = None
            message["audio"] = {
                "id": speaking.id,
                "data": base64.b64encode(data).decode(),
                "expires_at": speaking.expires_at,
                "transcript": text,
            }
        usage = body.get("usage")
        if isinstance(usage, dict):
            with_speech_usage(usage, speaking)
        return orjson.dumps(body)

    def charge(self, tab: Tab, speaking: Speaking) -> None:
        """The spoken audio on the request's ledger row: its seconds in `audio_seconds` (as a
        /v1/audio/speech row has them) and its characters priced as the speech model's tokens."""
        if not speaking.characters:
            return
        tab.audio_seconds += speaking.seconds
        tab.speech_model = self.model
        tab.spoken_tokens = math.ceil(speaking.characters / _CHARS_PER_TOKEN)


def with_speech_usage(usage: dict[str, Any], speaking: Speaking) -> None:
    """OpenAI's `completion_tokens_details.audio_tokens` (0: the gateway's speech is not made of
    model tokens, so every completion token is a text token) and Tantra's `tantra_speech`."""
    details = usage.get("completion_tokens_details")
    details = dict(details) if isinstance(details, dict) else {}
    details["audio_tokens"] = 0
    details.setdefault("text_tokens", usage.get("completion_tokens"))
    usage["completion_tokens_details"] = details
    usage["tantra_speech"] = speaking.usage()


def without_speech(body: bytes) -> bytes:
    """The request for the engine: the client's body less `modalities` and `audio` (the engine
    writes text; the gateway speaks it)."""
    payload = orjson.loads(body)
    for key in ("modalities", "audio"):
        payload.pop(key, None)
    return orjson.dumps(payload)


def speech_off(why: str = "text to speech is turned off on this gateway") -> APIError:
    return InvalidRequest(
        f"Audio output is not available: {why}; remove 'audio' from `modalities`.",
        param="modalities",
        code="unsupported_value",
    )


def speech_failed(exc: Exception) -> APIError:
    """A synthesis that failed: the backend's own 503, or a 500."""
    if isinstance(exc, SpeechUnavailable):
        return APIError(exc.message, code=exc.code, status=exc.status)
    return APIError("Speech synthesis of the answer failed.", code="speech_failed")
