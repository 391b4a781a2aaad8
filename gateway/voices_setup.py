"""Custom voices built from the settings and wired in (docs/audio.md, "Custom voices"): served when
speech is on and the Files API's blob store is there (the recordings and clips live in it); spoken
by the Coqui backend's XTTS model named by TANTRA_TTS_COQUI_CLONE_MODEL; reference clips checked
against their consent's speaker when the diarization extra (Resemblyzer) is installed."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from adapters.stt.diarizer import SpeakerCheck, diarization_installed
from adapters.tts.coqui import CoquiBackend
from gateway.components import Components
from gateway.routes.voices import voices_router
from gateway.services.custom_voices import CustomVoices
from gateway.services.voice_clips import ClipLimits, VoiceCloner
from gateway.store.voices import VoiceStore


def include_voices(app: FastAPI, parts: Components) -> CustomVoices | None:
    speech, storage, settings = parts.services.speech, parts.storage, parts.settings
    if speech is None or storage is None or storage.objects is None:
        return None
    store = VoiceStore(parts.shared.database)
    coqui = speech.synthesizer.backend("coqui")
    cloner = VoiceCloner(
        store,
        storage.blobs,
        coqui if isinstance(coqui, CoquiBackend) else None,
        settings.tts_coqui_clone_model,
        Path(settings.voices_clip_cache),
    )
    limits = ClipLimits(settings.voices_min_seconds, settings.voices_max_seconds, settings.voices_max_bytes)
    check = settings.voices_min_speaker_similarity > 0 and diarization_installed()
    speakers = SpeakerCheck(threads=settings.audio_threads, nice=settings.audio_nice) if check else None
    voices = CustomVoices(
        storage.objects,
        store,
        storage.blobs,
        limits,
        cloner,
        speakers,
        settings.voices_min_speaker_similarity,
    )
    speech.custom_voices = cloner
    app.include_router(voices_router(voices))
    return voices
