"""Text to speech: sentences spoken by eSpeak NG (or a Piper voice), brought to one loudness,
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
from adapters.tts.errors import SpeechUnavailable, UnknownVoice
from adapters.tts.loudness import Loudness
from adapters.tts.sentences import SentenceSplitter, split_sentences
from adapters.tts.synthesizer import MAX_SPEED, MIN_SPEED, OPENAI_VOICES, Synthesizer, Voice

__all__ = [
    "CONTENT_TYPES",
    "MAX_SPEED",
    "MIN_SPEED",
    "OPENAI_VOICES",
    "RESPONSE_FORMATS",
    "SAMPLE_RATE",
    "AudioFormat",
    "EspeakBackend",
    "Loudness",
    "PiperBackend",
    "SentenceSplitter",
    "SpeechBackend",
    "SpeechUnavailable",
    "SpokenPcm",
    "Synthesizer",
    "UnknownVoice",
    "Voice",
    "split_sentences",
    "wav_header",
]
