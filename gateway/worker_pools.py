"""The worker pools behind media, transcription and speech, built from the settings: the heavy
work (OCR, decoding, whisper.cpp, speech synthesis) runs there, off the event loop."""

from __future__ import annotations

import httpx

from adapters import MediaLimits, UrlFetcher, UrlPolicy
from adapters.stt import (
    AudioAnalyzer,
    DiarizeOptions,
    Diarizer,
    Transcriber,
    analysis_installed,
    diarization_installed,
)
from adapters.tts import (
    EspeakBackend,
    KokoroBackend,
    LanguageDetector,
    Loudness,
    PiperBackend,
    SpeechBackend,
    Synthesizer,
    kokoro_installed,
)
from adapters.tts.coqui import CoquiBackend
from gateway.admission import Admission
from gateway.media.service import MediaService, MediaWorkerSpec, media_executor
from gateway.services.speech import SpeechService
from gateway.services.transcription import TranscriptionService
from gateway.services.transcription_upstream import UpstreamTranscription
from gateway.settings.schema import Settings
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher


def speech_transcriber(settings: Settings) -> Transcriber | None:
    """whisper.cpp in worker processes, started on first use (None without a configured model)."""
    if settings.audio_whisper_model is None:
        return None
    return Transcriber(
        settings.audio_whisper_model,
        workers=settings.audio_workers,
        threads=settings.audio_threads,
        nice=settings.audio_nice,
        queue_timeout_s=settings.audio_queue_timeout_s,
        max_seconds=settings.audio_max_seconds,
        noise_suppression=settings.transcription_noise_suppression(),
    )


def transcription_service(
    settings: Settings,
    transcriber: Transcriber | None,
    admission: Admission,
    dispatcher: Dispatcher | None = None,
    catalog: ModelCatalog | None = None,
) -> TranscriptionService:
    """/v1/audio/transcriptions and /translations: whisper.cpp, with speaker diarization when it is
    installed and audio analysis when configured; other models to the upstream that serves them."""
    diarizer = None
    if transcriber is not None and settings.audio_diarization_enabled and diarization_installed():
        diarizer = Diarizer(
            workers=settings.audio_diarization_workers,
            threads=settings.audio_threads,
            nice=settings.audio_nice,
            options=DiarizeOptions(threshold=settings.audio_diarization_threshold),
        )
    return TranscriptionService(
        transcriber,
        settings.audio_model_names,
        admission,
        max_upload_bytes=settings.audio_max_upload_bytes,
        diarizer=diarizer,
        analyzer=audio_analyzer(settings),
        upstream=None
        if dispatcher is None or catalog is None or not settings.audio_upstream_transcription
        else UpstreamTranscription(dispatcher, catalog),
    )


def audio_analyzer(settings: Settings) -> AudioAnalyzer | None:
    """The emotion and sound-event checkpoints configured, in worker processes (None: neither, or
    torch and transformers are not installed)."""
    checkpoints = {
        kind: path
        for kind, path in (
            ("emotion", settings.audio_emotion_model),
            ("audio_events", settings.audio_events_model),
        )
        if path is not None
    }
    if not checkpoints or not analysis_installed():
        return None
    return AudioAnalyzer(
        checkpoints,
        top_k=settings.audio_analysis_top_k,
        workers=settings.audio_analysis_workers,
        threads=settings.audio_threads,
        nice=settings.audio_nice,
    )


def media_service(
    settings: Settings, client: httpx.AsyncClient, transcriber: Transcriber | None = None
) -> MediaService:
    """The adapters with this gateway's limits, OCR, image policy, URL allow-list and worker pool."""
    limits = MediaLimits(
        max_parts=settings.media_max_parts,
        max_images=settings.media_max_images,
        max_image_pixels=settings.media_max_image_pixels,
        max_total_pixels=settings.media_max_total_pixels,
        image_pixel_budget=settings.media_image_pixel_budget,
        max_part_bytes=settings.media_max_part_bytes,
        max_total_bytes=settings.media_max_total_bytes,
        max_pages=settings.media_max_pages,
        max_video_seconds=settings.media_max_video_seconds,
        video_fps=settings.media_video_fps,
        max_video_frames=settings.media_max_video_frames,
        ocr_pixel_budget=settings.media_ocr_max_pixels,
        deadline_s=settings.media_deadline_s,
    )
    spec = MediaWorkerSpec(
        limits,
        ocr_enabled=settings.media_ocr_enabled,
        ocr_lang=settings.media_ocr_lang,
        ocr_timeout_s=settings.media_ocr_timeout_s,
        image_formats=tuple(settings.media_image_formats),
        image_filter=settings.media_image_filter,
        log_format=settings.log_format,
        log_level=settings.log_level,
        log_prompts=settings.log_prompts,
    )
    fetcher = UrlFetcher(
        UrlPolicy(settings.media_url_allowlist, [str(net) for net in settings.media_url_allowed_networks]),
        client,
        timeout_s=settings.media_fetch_timeout_s,
        max_bytes=settings.media_max_part_bytes,
    )
    return MediaService(
        spec.preprocessor(),
        fetcher,
        lambda: media_executor(spec, settings.media_executor, settings.media_workers),
        concurrency=settings.media_workers,
        queue_timeout_s=settings.media_queue_timeout_s,
        transcriber=transcriber,
    )


def speech_service(settings: Settings, admission: Admission) -> SpeechService:
    """/v1/audio/speech: Piper and Coqui voices (when any are configured) and Kokoro's (when installed) before
    eSpeak NG's, so a language they speak gets their neural voice."""
    backends: list[SpeechBackend] = []
    if settings.tts_piper_voices:
        backends.append(PiperBackend(settings.tts_piper_voices))
    if settings.tts_coqui_models:  # the worker ends with the gateway: its stdin closes
        backends.append(CoquiBackend(settings.tts_coqui_models, settings.tts_coqui_python))
    if settings.tts_kokoro and kokoro_installed():
        backends.append(KokoroBackend())
    backends.append(EspeakBackend(settings.tts_espeak_binary, timeout_s=settings.tts_timeout_s))
    lufs = settings.speech_loudness_lufs()
    loudness = None if lufs is None else Loudness(lufs, settings.tts_true_peak_dbtp)
    mode = settings.tts_language_detection
    detector = None if mode == "off" else LanguageDetector(accurate=mode == "accurate")
    return SpeechService(
        Synthesizer(backends, concurrency=settings.tts_concurrency, loudness=loudness, detector=detector),
        admission,
        model=settings.tts_model,
        aliases=settings.tts_model_aliases,
        max_input_chars=settings.tts_max_input_chars,
    )
