"""Speech engines behind one interface: eSpeak NG (the default, offline, no model files) and Piper
(neural voices from a user-supplied .onnx voice)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from adapters.tts.audio import SAMPLE_WIDTH, SpokenPcm, change_tempo
from adapters.tts.errors import SpeechUnavailable, UnknownVoice
from adapters.tts.languages import language_code
from adapters.tts.voices import VoiceEntry

_log = logging.getLogger("tantra.tts")


class SpeechBackend(Protocol):
    """One speech engine. `synthesize` turns one sentence into mono 16-bit PCM at the engine's own
    rate, `speed` times as fast as its normal pace; it must not block the event loop."""

    name: str

    async def has_voice(self, voice: str) -> bool: ...

    async def voices(self) -> list[str]: ...

    async def catalog(self) -> list[VoiceEntry]:
        """The voices by language (not every name `has_voice` takes: one per voice)."""
        ...

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm: ...


# eSpeak NG's pace at speed 1.0, and the range of its -s flag (words per minute); past 450 it speeds
# up with its built-in sonic. Slower than 80 is reached by stretching (change_tempo).
_ESPEAK_WPM = 175
_ESPEAK_MIN_WPM, _ESPEAK_MAX_WPM = 80, 1000
_WAV_HEADER = 44


class EspeakBackend:
    """eSpeak NG through its command line, one asyncio subprocess per sentence.

    The CLI rather than a binding: a subprocess never holds the GIL or the event loop, is killed when
    the client leaves, and Debian's `espeak-ng` package is all it needs. The text goes in on stdin
    (never as an argument, so it cannot be read as an option) and the WAV comes back on stdout.
    """

    name = "espeak-ng"

    def __init__(self, binary: str = "espeak-ng", *, timeout_s: float = 30.0) -> None:
        self._binary = binary
        self._timeout_s = timeout_s
        self._known: tuple[frozenset[str], frozenset[str]] | None = None
        self._entries: list[VoiceEntry] = []
        self._lock = asyncio.Lock()

    def available(self) -> bool:
        return shutil.which(self._binary) is not None

    async def voices(self) -> list[str]:
        languages, _ = await self._catalog()
        return sorted(languages)

    async def catalog(self) -> list[VoiceEntry]:
        await self._catalog()
        return list(self._entries)

    async def has_voice(self, voice: str) -> bool:
        """A language or voice (`en-us`, `de`, `gmw/en-US`, `English_(America)`), optionally with a
        variant (`en-us+f3`, `en+klatt`)."""
        base, _, variant = voice.partition("+")
        languages, variants = await self._catalog()
        return base in languages and (not variant or variant in variants)

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        wpm = _ESPEAK_WPM * speed
        clamped = min(max(round(wpm), _ESPEAK_MIN_WPM), _ESPEAK_MAX_WPM)
        wav = await self._run("--stdout", "-b", "1", "-v", voice, "-s", str(clamped), stdin=text.encode())
        pcm = SpokenPcm(_wav_samples(wav), _wav_rate(wav))
        if wpm < _ESPEAK_MIN_WPM:
            pcm = await asyncio.to_thread(change_tempo, pcm, wpm / _ESPEAK_MIN_WPM)
        return pcm

    async def _catalog(self) -> tuple[frozenset[str], frozenset[str]]:
        if self._known is None:
            async with self._lock:
                if self._known is None:
                    listing = await self._run("--voices")
                    languages = _voice_names(listing, variants=False)
                    self._entries = _espeak_entries(listing)
                    variants = _voice_names(await self._run("--voices=variant"), variants=True)
                    self._known = (frozenset(languages), frozenset(variants))
        return self._known

    async def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        if not self.available():
            raise SpeechUnavailable(
                f"eSpeak NG (`{self._binary}`) is not installed; install Debian's espeak-ng package."
            )
        process = await asyncio.create_subprocess_exec(
            self._binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), self._timeout_s)
        except BaseException:
            # The client left, or eSpeak hung: the process must not outlive the request.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            raise SpeechUnavailable(f"eSpeak NG failed: {err.decode(errors='replace').strip()[:200]}")
        return out


def _voice_names(listing: bytes, *, variants: bool) -> set[str]:
    """The names `-v` takes from `espeak-ng --voices[=variant]`: language, voice name, file."""
    names: set[str] = set()
    for line in listing.decode(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        language, name, file = fields[1], fields[3], fields[4]
        if variants:
            names.update({name, file.removeprefix("!v/")})
        else:
            names.update({language, name, file})
    return names


def _espeak_entries(listing: bytes) -> list[VoiceEntry]:
    """One entry per voice of `espeak-ng --voices`, named by its language column (`fr-fr`); its
    gender is the variant's (`fr-fr+f3`), so none is given here."""
    entries: dict[str, VoiceEntry] = {}
    for line in listing.decode(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            name = fields[1]
            description = fields[3].replace("_", " ")
            entries.setdefault(
                name, VoiceEntry(name, language_code(name), EspeakBackend.name, None, description)
            )
    return list(entries.values())


def _wav_rate(wav: bytes) -> int:
    if len(wav) < _WAV_HEADER or wav[:4] != b"RIFF":
        raise SpeechUnavailable("eSpeak NG did not write a WAV file.")
    return int.from_bytes(wav[24:28], "little")


def _wav_samples(wav: bytes) -> bytes:
    # eSpeak writes its stdout WAV before it knows the length (sizes of 0x7FFFF000): the samples are
    # everything after the fixed 44-byte header.
    data = wav[_WAV_HEADER:]
    return data[: len(data) - len(data) % SAMPLE_WIDTH]


class PiperBackend:
    """Piper's neural voices: each a user-supplied `.onnx` model with its `.onnx.json` beside it.

    `piper-tts` (and onnxruntime) are an optional extra (`pip install 'tantra[piper]'`), imported the
    first time a Piper voice speaks; voices load once, lazily, and run in worker threads (onnxruntime
    releases the GIL). Speed maps to Piper's length scale.
    """

    name = "piper"

    def __init__(self, voices: Mapping[str, Path]) -> None:
        self._paths = dict(voices)
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def voices(self) -> list[str]:
        return sorted(self._paths)

    async def has_voice(self, voice: str) -> bool:
        return voice in self._paths

    async def catalog(self) -> list[VoiceEntry]:
        return [
            VoiceEntry(name, _piper_language(name, path), self.name)
            for name, path in sorted(self._paths.items())
        ]

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        if voice not in self._paths:
            raise UnknownVoice(voice)
        return await asyncio.to_thread(self._speak, text, voice, speed)

    def _speak(self, text: str, voice: str, speed: float) -> SpokenPcm:
        model = self._load(voice)
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=(model.config.length_scale or 1.0) / speed)
        chunks = list(model.synthesize(text, syn_config=config))
        rate = chunks[0].sample_rate if chunks else model.config.sample_rate
        return SpokenPcm(b"".join(chunk.audio_int16_bytes for chunk in chunks), rate)

    def _load(self, voice: str) -> Any:
        with self._lock:
            if voice not in self._loaded:
                try:
                    from piper import PiperVoice
                except ImportError as exc:
                    raise SpeechUnavailable(
                        "Piper voices need the `piper-tts` package: pip install 'tantra[piper]'."
                    ) from exc
                path = self._paths[voice]
                _log.info("loading Piper voice %s from %s", voice, path)
                try:
                    self._loaded[voice] = PiperVoice.load(path)
                except Exception as exc:
                    raise SpeechUnavailable(f"The Piper voice `{voice}` could not be loaded: {exc}") from exc
            return self._loaded[voice]


def _piper_language(name: str, model: Path) -> str:
    """A Piper voice's language, from its `.onnx.json` (`language.code`, `en_US`) or else from its
    file name (`en_US-amy-medium.onnx`)."""
    config = model.with_name(model.name + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        code = json.loads(config.read_text(encoding="utf-8"))["language"]["code"]
        if isinstance(code, str) and code:
            return language_code(code)
    return language_code(model.name.split("-")[0] or name)
