"""The audio settings: realtime sessions (`TANTRA_REALTIME_*`), text to speech (`TANTRA_TTS_*`) and
speech to text (`TANTRA_AUDIO_*`).

A mixin of `Settings` (gateway/settings/schema.py), kept apart so the schema stays readable; the
fields are read, named and reloaded exactly as the schema's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.settings.fields_audio_analysis import AudioAnalysisFields
from gateway.settings.fields_audio_quality import AudioQualityFields
from gateway.settings.fields_voices import VoiceFields
from gateway.settings.fields_webrtc import WebRtcFields


class AudioFields(AudioQualityFields, AudioAnalysisFields, WebRtcFields, VoiceFields):
    """What the gateway hears and speaks: realtime sessions, speech synthesis and transcription
    (and, in the mixins, loudness and noise suppression, emotion and sound-event labels)."""

    # WebSocket /v1/realtime (gateway/realtime/, docs/realtime.md).
    realtime_enabled: bool = Field(
        True, description="Serve OpenAI's Realtime API over WebSocket at /v1/realtime."
    )
    realtime_max_audio_buffer_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds of uncommitted input audio a realtime session may hold (pcm16 at 24 kHz: "
        "48 KiB a second, so 60 s is 2.8 MiB per session).",
    )
    # A session is a connection held open: capped, so that one key cannot exhaust a replica.
    realtime_max_sessions: int = Field(
        100, ge=1, description="Realtime sessions open at once on one replica; more get 429."
    )
    realtime_max_sessions_per_key: int = Field(
        4,
        ge=1,
        description="Realtime sessions one key may have open on all replicas together (counted in "
        "Redis; each session also holds one of the key's and the tenant's max_concurrent slots); "
        "more get 429.",
    )
    realtime_idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="A realtime session that sends no event for this long while no response or "
        "transcription runs is closed (1000, reason given), freeing its slot.",
    )
    realtime_max_items: int = Field(512, ge=1, description="Conversation items a realtime session may hold.")
    realtime_transcription_model: str = Field(
        "whisper-1", description="The speech-to-text model committed realtime audio is sent to by default."
    )
    realtime_speech_model: str = Field(
        "tts-1", description="The text-to-speech model realtime answers are spoken by."
    )

    # Text to speech, POST /v1/audio/speech (adapters/tts/, docs/audio.md).
    tts_enabled: bool = Field(
        True, description="Serve /v1/audio/speech and spoken chat answers, and list the speech model."
    )
    tts_model: str = Field("tantra-tts", description="The speech model's id in /v1/models and the ledger.")
    tts_model_aliases: list[str] = Field(
        default_factory=lambda: ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"],
        description="OpenAI's speech model names, accepted as the speech model.",
    )
    tts_max_input_chars: int = Field(4096, ge=1, description="Longest `input` to speak, as OpenAI's.")
    tts_concurrency: int = Field(
        2,
        ge=1,
        description="Sentences synthesised at once across all requests (eSpeak processes, Piper runs).",
    )
    tts_espeak_binary: str = Field("espeak-ng", description="The eSpeak NG command (Debian's espeak-ng).")
    tts_timeout_s: float = Field(30.0, gt=0, description="Longest synthesis of one sentence.")
    tts_piper_voices: dict[str, Path] = Field(
        default_factory=dict,
        description='Piper voices by name, as JSON: {"amy": "/voices/en_US-amy-medium.onnx"} (each with '
        "its .onnx.json beside it); needs the `piper` extra. A name here wins over eSpeak's.",
    )
    tts_coqui_models: dict[str, Path] = Field(
        default_factory=dict,
        description='Coqui TTS model directories by name, as JSON: {"vits_en": "/models/coqui/vits_en"} '
        "(config.json beside model.pth; docs/audio.md, Coqui TTS). A VITS model is a voice of that name; "
        "spoken by a worker in Coqui's own venv (tts_coqui_python, built by `make coqui`).",
    )
    tts_coqui_python: Path = Field(
        Path(".venv-coqui/bin/python"),
        description="The interpreter of Coqui's venv, running adapters/tts/coqui_worker.py (`make coqui`).",
    )
    tts_kokoro: bool = Field(
        True,
        description="Speak Japanese with Kokoro-82M's voices (jf_alpha, jm_kumo, ...) when the `kokoro` "
        "extra is installed; loaded the first time one speaks.",
    )
    tts_language_detection: Literal["fast", "accurate", "off"] = Field(
        "fast",
        description="How an OpenAI voice name (alloy, ...) finds the language of a text sent without "
        "`language`: lingua's low-accuracy mode (about 1 s and 100 MB on first use), its accurate "
        "mode (some 20 s and 1 GB), or off (the voice's own English).",
    )

    # Speech to text (adapters/speech, docs/audio.md).
    audio_whisper_model: Path | None = Field(
        None,
        description="A whisper.cpp ggml model file (`make run` builds .cache/checkpoints/whisper-tiny/"
        "ggml-model.bin); unset: no speech-to-text.",
    )
    audio_model_names: list[str] = Field(
        default_factory=lambda: ["whisper-1"],
        description="The model names /v1/audio/transcriptions answers to, all served by that model.",
    )
    audio_upstream_transcription: bool = Field(
        True,
        description="Send a transcription or translation for a model not in TANTRA_AUDIO_MODEL_NAMES to "
        "the upstream whose catalogue lists it (vLLM serving a Whisper checkpoint); off: such a model "
        "gets 404.",
    )
    audio_workers: int = Field(
        1, ge=1, description="Transcriptions run at once (each in a worker process with its own model)."
    )
    audio_threads: int = Field(2, ge=1, description="whisper.cpp threads per worker.")
    audio_nice: int = Field(
        10, ge=0, le=19, description="How far below the gateway and vLLM the workers' CPU priority is."
    )
    audio_max_upload_bytes: int = Field(
        25 * 1024 * 1024, gt=0, description="Largest audio upload (OpenAI's 25 MB); larger gets 413."
    )
    audio_max_seconds: float = Field(
        600.0, gt=0, description="Longest audio accepted, per upload or chat part; longer gets 400."
    )
    audio_queue_timeout_s: float = Field(
        120.0, gt=0, description="Longest wait for a free speech worker before 503 `transcription_busy`."
    )
    # Speaker diarization, `response_format: diarized_json` (adapters/stt/diarization.py).
    audio_diarization_enabled: bool = Field(
        True,
        description="Answer `diarized_json` transcriptions (who spoke when) with Resemblyzer's voice "
        "encoder; needs the `diarization` extra (without it such requests get 400).",
    )
    audio_diarization_threshold: float = Field(
        0.38,
        gt=0,
        lt=2,
        description="Cosine distance between two clusters of voice embeddings above which they are "
        "different speakers (lower: more speakers found).",
    )
    audio_diarization_workers: int = Field(
        1, ge=1, description="Diarizations run at once (each in a worker process with its own encoder)."
    )
