"""The audio quality settings: the loudness speech is brought to (`TANTRA_TTS_LOUDNESS_*`) and the
noise suppression of input speech (`TANTRA_AUDIO_NOISE_SUPPRESSION*`); docs/audio.md.

A mixin of the audio settings (fields_audio.py), so of `Settings`; the fields are read, named and
reloaded exactly as the schema's own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class AudioQualityFields(BaseModel):
    """How speech sounds leaving the gateway, and what is done to the speech it hears."""

    tts_loudness_lufs: Annotated[float, Field(ge=-50, le=-5)] | Literal["off"] = Field(
        -16.0,
        description="Integrated loudness (EBU R128, LUFS) every spoken sentence is brought to, under a "
        "true-peak limiter; `off` leaves speech as the voice makes it. Streamed speech is normalised "
        "sentence by sentence.",
    )
    tts_true_peak_dbtp: float = Field(
        -1.0, ge=-20, le=0, description="The limiter's ceiling for normalised speech, in dBTP (true peak)."
    )
    audio_noise_suppression: Literal["off", "vad", "all"] = Field(
        "off",
        description="Spectral-gating noise suppression of input speech: `vad` before the realtime "
        "server VAD hears it (the committed audio is kept as sent), `all` also before every "
        "transcription (uploads, chat audio, realtime turns).",
    )
    audio_noise_suppression_strength: float = Field(
        1.0, gt=0, le=1, description="How much of the noise suppression removes (1: all it finds)."
    )

    def speech_loudness_lufs(self) -> float | None:
        return None if self.tts_loudness_lufs == "off" else self.tts_loudness_lufs

    def vad_noise_suppression(self) -> float | None:
        """The suppression's strength before server VAD; None: off."""
        return None if self.audio_noise_suppression == "off" else self.audio_noise_suppression_strength

    def transcription_noise_suppression(self) -> float | None:
        """The suppression's strength before transcription; None: off."""
        return self.audio_noise_suppression_strength if self.audio_noise_suppression == "all" else None
