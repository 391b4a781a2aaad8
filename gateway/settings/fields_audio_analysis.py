"""The audio analysis settings (`TANTRA_AUDIO_EMOTION_MODEL`, `TANTRA_AUDIO_EVENTS_MODEL`, ...):
the audio-classification checkpoints behind transcription's `include[]=emotion` and
`include[]=audio_events`; docs/audio.md.

A mixin of the audio settings (fields_audio.py), so of `Settings`; the fields are read, named and
reloaded exactly as the schema's own.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class AudioAnalysisFields(BaseModel):
    """Which checkpoints label the speech the gateway hears, and how many labels come back."""

    audio_emotion_model: Path | None = Field(
        None,
        description="A Hugging Face audio-classification checkpoint directory (wav2vec2- or AST-style, "
        "its labels in config.json's id2label) for `include[]=emotion`; none: that include gets 400. "
        "Needs trained weights for meaningful labels, and the `analysis` extra (torch, transformers).",
    )
    audio_events_model: Path | None = Field(
        None,
        description="A Hugging Face audio-classification checkpoint directory (e.g. an AST fine-tuned "
        "on AudioSet) for `include[]=audio_events`; none: that include gets 400.",
    )
    audio_analysis_top_k: int = Field(
        5, ge=1, le=100, description="Labels returned per analysis, highest score first."
    )
    audio_analysis_workers: int = Field(
        1, ge=1, description="Worker processes running the audio-classification checkpoints."
    )
