"""Text to speech: sentences spoken by eSpeak NG (or a Piper or Kokoro voice), in the text's language
(given or detected), brought to one loudness,
resampled to 24 kHz mono and encoded as each is made. Pure audio work with no knowledge of HTTP; the
gateway's /v1/audio/speech and the realtime endpoint call the Synthesizer. See docs/audio.md."""

from adapters.tts.audio import (
    CONTENT_TYPES,
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    AudioFormat,
    SpokenPcm,
    wav_header,
)
from adapters.tts.backends import EspeakBackend, PiperBackend, SpeechBackend
from adapters.tts.errors import SpeechUnavailable, UnknownVoice, UnsupportedLanguage
from adapters.tts.kokoro import KokoroBackend, kokoro_installed
from adapters.tts.languages import LanguageDetector, language_code
from adapters.tts.loudness import Loudness
from adapters.tts.sentences import SentenceSplitter, split_sentences
from adapters.tts.synthesizer import MAX_SPEED, MIN_SPEED, OPENAI_VOICES, Detecting, Synthesizer, Voice
from adapters.tts.voices import VoiceEntry

__all__ = [
    "CONTENT_TYPES",
    "MAX_SPEED",
    "MIN_SPEED",
    "OPENAI_VOICES",
    "RESPONSE_FORMATS",
    "SAMPLE_RATE",
    "AudioFormat",
    "Detecting",
    "EspeakBackend",
    "KokoroBackend",
    "LanguageDetector",
    "Loudness",
    "PiperBackend",
    "SentenceSplitter",
    "SpeechBackend",
    "SpeechUnavailable",
    "SpokenPcm",
    "Synthesizer",
    "UnknownVoice",
    "UnsupportedLanguage",
    "Voice",
    "VoiceEntry",
    "kokoro_installed",
    "language_code",
    "split_sentences",
    "wav_header",
]
