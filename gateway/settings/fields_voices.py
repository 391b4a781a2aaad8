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
    # Resemblyzer's embeddings (the diarization extra): the same speaker reading two texts scores
    # about 0.85 to 0.95, different people mostly below 0.75. A guard against the wrong clip, not
    # against a forger who imitates the voice actor.
    voices_min_speaker_similarity: float = Field(
        0.75,
        ge=0,
        le=1,
        description="How alike (cosine of speaker embeddings) a reference clip's voice must be to its "
        "consent recording's; below: 400 `voice_consent_mismatch`. 0: not checked (nor when the "
        "diarization extra is not installed).",
    )
    voices_clip_cache: str = Field(
        ".cache/voices",
        description="Where the reference clips the XTTS worker reads are kept on local disk (fetched "
        "from the blob store on a voice's first use, removed with it).",
    )
