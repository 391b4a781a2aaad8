"""Which voice speaks a text: a region given picks its own voice when one is installed; a detected
language whose voice cannot read the text keeps the requested voice (a stand-in backend whose
`reads` says no, as Kokoro's does without a kanji dictionary); and a text not known when the voice
is chosen (a chat answer being written) picks its voice from its first sentence whose language is
found, then keeps it. Real eSpeak NG and lingua; the stand-in backend and detector only where the
rule needs them."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from adapters.tts import (
    Detecting,
    EspeakBackend,
    LanguageDetector,
    PiperBackend,
    SpokenPcm,
    Synthesizer,
    Voice,
    VoiceEntry,
)
from tests.audio_samples import needs_espeak

pytestmark = needs_espeak

needs_lingua = pytest.mark.skipif(importlib.util.find_spec("lingua") is None, reason="lingua not installed")


class _Japanese(LanguageDetector):
    """Every text is Japanese: what lingua says of a random answer with kana in it."""

    def detect(self, text: str, among: Iterable[str]) -> str | None:
        return "ja"


class _Unreading:
    """A Japanese voice that may or may not read a text, as Kokoro without pyopenjtalk-plus."""

    name = "unreading"

    def __init__(self, reads: bool) -> None:
        self._reads = reads
        self.spoken: list[str] = []

    async def voices(self) -> list[str]:
        return ["jf_test"]

    async def has_voice(self, voice: str) -> bool:
        return voice == "jf_test"

    async def catalog(self) -> list[VoiceEntry]:
        return [VoiceEntry("jf_test", "ja", self.name, "f")]

    def reads(self, text: str) -> bool:
        return self._reads

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        self.spoken.append(text)
        return SpokenPcm(b"\x00\x10" * 2400, 24_000)


class _Recording(EspeakBackend):
    """eSpeak NG, noting which voice spoke each sentence."""

    def __init__(self) -> None:
        super().__init__()
        self.spoken: list[tuple[str, str]] = []

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        self.spoken.append((text, voice))
        return await super().synthesize(text, voice, speed)


TEXT = "ドイツ 专业人士 Celtic Colleges"


async def test_a_detected_language_whose_voice_cannot_read_the_text_keeps_the_requested_voice() -> None:
    unreading = _Unreading(reads=False)
    synthesizer = Synthesizer([unreading, EspeakBackend()], detector=_Japanese())
    voice = await synthesizer.voice("alloy", text=TEXT)
    assert (voice.backend.name, voice.name, voice.language) == ("espeak-ng", "en-us+f4", None)
    assert len(await synthesizer.speak(TEXT, voice, "pcm")) > 24_000  # spoken, by eSpeak
    assert unreading.spoken == []
    # A language given is not a guess: its voice speaks (and says so if it cannot).
    assert (await synthesizer.voice("alloy", language="ja", text=TEXT)).name == "jf_test"


async def test_a_detected_language_whose_voice_reads_the_text_gets_that_voice() -> None:
    synthesizer = Synthesizer([_Unreading(reads=True), EspeakBackend()], detector=_Japanese())
    voice = await synthesizer.voice("alloy", text=TEXT)
    assert (voice.backend.name, voice.name, voice.language) == ("unreading", "jf_test", "ja")


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


FRENCH_LATER = (
    "Okay. Bonjour, je m'appelle Marie et j'habite à Paris. Hello there, this is still spoken in French."
)


@needs_lingua
async def test_a_text_to_come_keeps_the_first_language_found(detector: LanguageDetector) -> None:
    espeak = _Recording()
    synthesizer = Synthesizer([espeak], detector=detector)
    voice = synthesizer.detecting(await synthesizer.voice("alloy"))
    assert isinstance(voice, Detecting) and not voice.found
    assert len(await synthesizer.speak(FRENCH_LATER, voice, "pcm")) > 24_000
    # "Okay." is too short to tell: alloy's own English; the next is French, and French stays.
    assert [name for _, name in espeak.spoken] == ["en-us+f4", "fr-fr+f4", "fr-fr+f4"]
    assert voice.found and (voice.voice.name, voice.voice.language) == ("fr-fr+f4", "fr")


async def _pieces(text: str) -> AsyncIterator[str]:
    for start in range(0, len(text), 7):
        yield text[start : start + 7]


@needs_lingua
async def test_a_streamed_text_picks_its_voice_as_its_sentences_complete(detector: LanguageDetector) -> None:
    espeak = _Recording()
    synthesizer = Synthesizer([espeak], detector=detector)
    voice = synthesizer.detecting(await synthesizer.voice("onyx"))
    german = "Guten Morgen, wie geht es dir heute? Mir geht es gut. Hello there."
    chunks = [chunk async for chunk in synthesizer.stream_pcm(_pieces(german), voice)]
    assert chunks
    assert espeak.spoken == [
        ("Guten Morgen, wie geht es dir heute?", "de+m7"),
        ("Mir geht es gut.", "de+m7"),
        ("Hello there.", "de+m7"),
    ]


async def test_only_an_openai_voice_without_a_language_detects(detector: LanguageDetector) -> None:
    synthesizer = Synthesizer([EspeakBackend()], detector=detector)
    for name, language in (("fr-fr", None), ("en-gb+f3", None), ("alloy", "de")):
        voice = await synthesizer.voice(name, language=language)
        assert synthesizer.detecting(voice) is voice, name
    plain = Synthesizer([EspeakBackend()])  # no detector: the voice's own language
    voice = await plain.voice("alloy")
    assert isinstance(plain.detecting(voice), Voice)


async def test_a_region_picks_its_own_voice_when_one_is_installed() -> None:
    synthesizer = Synthesizer([EspeakBackend()])
    cases = {
        ("alloy", "pt-BR"): "pt-br+f4",  # eSpeak NG's Brazilian voice
        ("alloy", "pt_br"): "pt-br+f4",
        ("alloy", "pt"): "pt+f4",
        ("alloy", "en-GB"): "en-gb+f4",
        ("sage", "en-US"): "en-us+f1",  # sage is British: American when asked
        ("ballad", "en-GB"): "en-gb-x-rp+m2",  # already British: its own accent kept
        ("alloy", "en-AU"): "en-us+f4",  # no Australian voice: the alias's own English
        ("alloy", "fr-CA"): "fr-fr+f4",  # no Canadian French: the language's voice
        ("echo", "fr-BE"): "fr-be+m1",
        ("alloy", "es-419"): "es-419+f4",
    }
    for (name, language), expected in cases.items():
        voice = await synthesizer.voice(name, language=language)
        assert (voice.name, voice.language) == (expected, language[:2]), (name, language)


async def test_a_region_picks_a_piper_voice_named_for_it(tmp_path: Path) -> None:
    """Piper names a voice by its locale, speaker and quality (`pt_BR-faber-medium`): a region given
    picks the voice of its locale ahead of eSpeak NG's; a region without one falls back to the
    language's voice (the preferred backend's, Piper here), and a language Piper lacks to eSpeak NG;
    a region the alias's own voice speaks keeps it, as without Piper.
    Only the catalogue is read: the model files need not exist to choose among them."""
    names = ["de_DE-thorsten-medium", "en_GB-alan-low", "en_US-lessac-medium", "pt_BR-faber-medium"]
    names.append("pt_PT-tugao-medium")
    piper = PiperBackend({name: tmp_path / f"{name}.onnx" for name in names})
    synthesizer = Synthesizer([piper, EspeakBackend()])
    cases = {
        "pt-BR": ("pt_BR-faber-medium", "piper"),
        "pt_pt": ("pt_PT-tugao-medium", "piper"),
        "en-GB": ("en_GB-alan-low", "piper"),
        "en-US": ("en-us+f4", "espeak-ng"),  # alloy's own voice already speaks it
        "de-AT": ("de_DE-thorsten-medium", "piper"),  # no Austrian voice: the language's
        "fr-CA": ("fr-fr+f4", "espeak-ng"),  # no French Piper voice: eSpeak NG's
    }
    for language, (expected, backend) in cases.items():
        voice = await synthesizer.voice("alloy", language=language)
        assert (voice.name, voice.backend.name) == (expected, backend), language
