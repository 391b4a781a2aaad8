"""Speech errors: adapters' one MediaError, with the status and code a client should get."""

from __future__ import annotations

from adapters.errors import MediaError


class UnknownVoice(MediaError):
    def __init__(self, voice: str, known: str = "") -> None:
        hint = f" Supported voices: {known}." if known else ""
        super().__init__("voice", f"Unknown voice `{voice}`.{hint}", code="invalid_voice")


class SpeechUnavailable(MediaError):
    """The speech engine cannot run (not installed, a voice file that does not load, a crash)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message, code="speech_unavailable", status=503)


class UnsupportedLanguage(MediaError):
    """A `language` no installed voice speaks."""

    def __init__(self, language: str, known: str = "") -> None:
        hint = f" Languages with a voice: {known}." if known else ""
        super().__init__(
            "language", f"No voice speaks the language `{language}`.{hint}", code="unsupported_language"
        )
