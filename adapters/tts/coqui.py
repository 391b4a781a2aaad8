"""Coqui TTS voices (VITS, XTTS v2) spoken by a worker process in Coqui's own venv.

coqui-tts cannot live in the gateway's venv: it refuses to import without torchaudio and torchcodec,
whose PyPI builds pin a torch that breaks vLLM's import there. `make coqui` builds `.venv-coqui`
(torch from the same local wheel, torchaudio and torchcodec as pure Python); its interpreter runs
adapters/tts/coqui_worker.py and the gateway talks to it over a pipe, one JSON line each way, as it
talks to its other speech workers. The worker starts on the first Coqui sentence and loads each
model once; a worker that dies fails only the sentence it was speaking and is started again.

A voice is a Coqui model directory (its name is the directory's), or a cloned voice: an XTTS model
conditioned on a reference clip (`clone`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from adapters.tts.audio import SpokenPcm
from adapters.tts.errors import SpeechUnavailable, UnknownVoice
from adapters.tts.languages import language_code
from adapters.tts.voices import VoiceEntry

_log = logging.getLogger("tantra.tts")

WORKER = Path(__file__).with_name("coqui_worker.py")
# An answer holds a sentence's audio in base64: far past asyncio's 64 KiB line limit.
_LINE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class ClonedVoice:
    """A voice made from a reference clip: the XTTS model that speaks it and the clip (a WAV file)."""

    model: str
    clip: Path
    language: str = "en"


class CoquiBackend:
    """Coqui model directories by name, spoken by one worker process (requests go one at a time:
    a model on CPU uses every core it is given)."""

    name = "coqui"

    def __init__(self, models: Mapping[str, Path], python: str | Path, *, timeout_s: float = 300.0) -> None:
        self._models = {name: Path(folder) for name, folder in models.items()}
        self._languages = {name: _model_language(folder) for name, folder in self._models.items()}
        self._python = str(python)
        self._timeout_s = timeout_s
        self._cloned: dict[str, ClonedVoice] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    def clone(self, voice: str, model: str, clip: Path, language: str = "en") -> None:
        """Adds `voice`, spoken by the XTTS model `model` conditioned on `clip`."""
        if model not in self._models:
            raise UnknownVoice(model)
        self._cloned[voice] = ClonedVoice(model, Path(clip), language_code(language))

    def forget(self, voice: str) -> None:
        self._cloned.pop(voice, None)

    async def voices(self) -> list[str]:
        return sorted([*self._models, *self._cloned])

    async def has_voice(self, voice: str) -> bool:
        return voice in self._models or voice in self._cloned

    async def catalog(self) -> list[VoiceEntry]:
        entries = [VoiceEntry(name, language, self.name) for name, language in self._languages.items()]
        entries += [VoiceEntry(name, cloned.language, self.name) for name, cloned in self._cloned.items()]
        return sorted(entries, key=lambda entry: entry.name)

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        request: dict[str, object] = {"text": text, "speed": speed}
        if voice in self._cloned:
            cloned = self._cloned[voice]
            request |= {"model": str(self._models[cloned.model]), "speaker_wav": str(cloned.clip)}
            request["language"] = cloned.language
        elif voice in self._models:
            request |= {"model": str(self._models[voice]), "language": self._languages[voice]}
        else:
            raise UnknownVoice(voice)
        answer = await self._ask(request)
        if "error" in answer:
            raise SpeechUnavailable(f"The Coqui voice `{voice}` could not speak: {answer['error']}")
        return SpokenPcm(base64.b64decode(str(answer["pcm"])), int(str(answer["rate"])))

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def _ask(self, request: dict[str, object]) -> dict[str, object]:
        async with self._lock:
            process = await self._worker()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write((json.dumps(request) + "\n").encode())
                await process.stdin.drain()
                line = await asyncio.wait_for(process.stdout.readline(), self._timeout_s)
            except (OSError, TimeoutError) as exc:
                await self.close()
                raise SpeechUnavailable(f"The Coqui worker stopped: {exc or type(exc).__name__}") from exc
            if not line:
                await self.close()
                raise SpeechUnavailable("The Coqui worker stopped (see the gateway's log).")
            answer: dict[str, object] = json.loads(line)
            return answer

    async def _worker(self) -> asyncio.subprocess.Process:
        if self._process is None or self._process.returncode is not None:
            if not await asyncio.to_thread(Path(self._python).exists):
                raise SpeechUnavailable(
                    f"Coqui voices need Coqui's venv ({self._python} is missing): run `make coqui`."
                )
            _log.info("starting the Coqui worker with %s", self._python)
            self._process = await asyncio.create_subprocess_exec(
                self._python,
                str(WORKER),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
            )
        return self._process


def _model_language(folder: Path) -> str:
    """A model's language from its config.json (`phoneme_language`, or XTTS's first of `languages`);
    English when it says none."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "en"
    languages = config.get("languages") or []
    code = config.get("phoneme_language") or (languages[0] if languages else None)
    return language_code(code) if isinstance(code, str) and code else "en"
