"""Custom voices: OpenAI's `audio.voice_consent` and `audio.voice` objects, their lists and deletion
answers, and the JSON body that renames a consent recording."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from gateway.protocol.common import Strict

# OpenAI's custom voice ids; a voice name of this shape is looked up as one.
VOICE_PREFIX = "voice_"


class VoiceConsent(BaseModel):
    id: str
    object: Literal["audio.voice_consent"] = "audio.voice_consent"
    name: str
    language: str
    created_at: int


class VoiceConsentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceConsent]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VoiceConsentDeleted(BaseModel):
    id: str
    object: Literal["audio.voice_consent"] = "audio.voice_consent"
    deleted: bool = True


class VoiceConsentUpdate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=256)]


class CustomVoice(BaseModel):
    id: str
    object: Literal["audio.voice"] = "audio.voice"
    name: str
    type: Literal["audio_sample"] = "audio_sample"
    created_at: int
    # Tantra's: the consent recording it was made under.
    consent: str


class CustomVoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CustomVoice]
    first_id: str | None
    last_id: str | None
    has_more: bool


class CustomVoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True
