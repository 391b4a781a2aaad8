"""The voices installed, by language: what /v1/audio/voices lists and what a language's voice is
picked from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Gender = Literal["f", "m"]


@dataclass(frozen=True)
class VoiceEntry:
    """One voice a backend speaks: its name (what `voice` takes), its language (ISO 639-1, see
    languages.py), the backend's name, and its gender when the backend says."""

    name: str
    language: str
    backend: str
    gender: Gender | None = None
    description: str = ""

    def card(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "object": "voice",
            "language": self.language,
            "backend": self.backend,
            "gender": self.gender,
            "description": self.description,
        }


def gender_of(variant: str) -> Gender | None:
    """The gender of an eSpeak NG variant as OPENAI_VOICES names them (`f3`, `m7`)."""
    first = variant[:1].lower()
    return "f" if first == "f" else "m" if first == "m" else None


def pick(
    entries: Sequence[VoiceEntry], language: str, gender: Gender | None, region: str | None = None
) -> VoiceEntry | None:
    """The voice for `language`: the voice named for `region` when one is installed (eSpeak NG's
    `pt-br`, or a Piper voice such as `pt_BR-faber-medium`, for `pt-BR`); else the first backend's
    (backends are listed in their order of preference, neural first), of `gender` when it has one;
    within eSpeak NG the plain language (`fr` before `fr-be`, then `fr-fr`)."""
    named = regional(entries, language, region)
    if named is not None:
        return named
    speaking = [entry for entry in entries if entry.language == language]
    if not speaking:
        return None
    backend = speaking[0].backend
    own = [entry for entry in speaking if entry.backend == backend]
    own.sort(key=lambda entry: (entry.gender != gender, _regional(entry.name, language), entry.name))
    return own[0]


def regional(entries: Sequence[VoiceEntry], language: str, region: str | None) -> VoiceEntry | None:
    """The installed voice named for `region` (`pt-br`, `en-gb`, `es-419`), if any: eSpeak NG names
    a regional voice by the region itself, Piper by its locale before the speaker and quality
    (`pt_BR-faber-medium`, `en_GB-alan-low`). Entries come in their backends' order of preference,
    so a Piper voice wins over eSpeak NG's for the same region."""
    if region is None:
        return None
    return next((e for e in entries if e.language == language and _named_for(e.name, region)), None)


def _named_for(name: str, region: str) -> bool:
    lowered = name.lower()
    if lowered == region:
        return True
    locale = lowered.split("-", 1)[0]
    return "_" in locale and locale.replace("_", "-") == region


def _regional(name: str, language: str) -> int:
    lowered = name.lower()
    if lowered == language:
        return 0
    if lowered == f"{language}-{language}":
        return 1
    return 2
