"""Custom voices' settings (`TANTRA_TTS_COQUI_CLONE_MODEL`, `TANTRA_VOICES_*`): the XTTS model that
speaks a tenant's voices and what a consent recording or reference clip may be (docs/audio.md,
"Custom voices").

A mixin of `Settings` (through the audio mixin), read exactly as the schema's own fields.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class VoiceFields(BaseModel):
    """Custom voices: OpenAI's /v1/audio/voice_consents and /v1/audio/voices."""

    tts_coqui_clone_model: str = Field(
        "",
        description="The XTTS v2 model (a name in tts_coqui_models) that speaks custom voices "
        '(`voice: {"id": "voice_..."}`), conditioned on each voice\'s reference clip; empty: custom '
        "voices can be made but not spoken (400).",
    )
    voices_max_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest consent recording or reference clip (OpenAI's 10 MiB); larger gets 413.",
    )
    voices_min_seconds: float = Field(
        2.0, gt=0, description="Shortest consent recording or reference clip; shorter gets 400."
    )
    voices_max_seconds: float = Field(
        60.0, gt=0, description="Longest consent recording or reference clip; longer gets 400."
    )
    voices_clip_cache: str = Field(
        ".cache/voices",
        description="Where the reference clips the XTTS worker reads are kept on local disk (fetched "
        "from the blob store on a voice's first use, removed with it).",
    )
