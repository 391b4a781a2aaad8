"""The voice of spoken answers follows the language a session or a chat request names (the
synthesizer on real eSpeak NG; chat's order and the session's plan as the endpoints call them)."""

from __future__ import annotations

import pytest

from adapters.tts import Detecting, EspeakBackend, LanguageDetector, Synthesizer, Voice
from gateway.errors import InvalidRequest
from gateway.protocol import ChatCompletionRequest
from gateway.protocol.realtime import ResponseOptions
from gateway.realtime.session_config import SessionConfig
from gateway.services.spoken import ChatSpeech
from tests.audio_samples import needs_espeak


def _chat(audio: dict[str, str]) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "modalities": ["text", "audio"],
            "audio": audio,
        }
    )


@needs_espeak
async def test_a_chat_answer_speaks_the_named_language() -> None:
    speech = ChatSpeech(Synthesizer([EspeakBackend()]), model="tantra-tts")
    french = await speech.order(_chat({"voice": "alloy", "format": "wav", "language": "fr"}))
    assert french is not None and isinstance(french.voice, Voice)
    assert (french.voice.name, french.voice.language) == ("fr-fr+f4", "fr")
    own = await speech.order(_chat({"voice": "alloy", "format": "wav"}))
    assert own is not None and isinstance(own.voice, Voice) and own.voice.name == "en-us+f4"
    # With a detector, no language: the answer's text will pick it (its own English until then).
    detecting = ChatSpeech(Synthesizer([EspeakBackend()], detector=LanguageDetector()), model="tantra-tts")
    later = await detecting.order(_chat({"voice": "alloy", "format": "wav"}))
    assert later is not None and isinstance(later.voice, Detecting) and later.voice.voice.name == "en-us+f4"
    with pytest.raises(InvalidRequest) as caught:
        await speech.order(_chat({"voice": "alloy", "format": "wav", "language": "xx"}))
    assert caught.value.param == "audio.language"


def test_a_session_plans_its_transcription_language() -> None:
    config = SessionConfig(id="sess_1", model="m")
    assert config.plan(ResponseOptions(), []).language is None
    config.transcription = {"model": "whisper-1", "language": "ja"}
    assert config.plan(ResponseOptions(), []).language == "ja"
