"""The speech synthesizer on real eSpeak NG: sentences (whole and streamed), voices, every response
format decoded back with PyAV at the length eSpeak itself speaks the text, speed, streaming as it is
made, and a caller that stops early stopping eSpeak."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.tts import (
    RESPONSE_FORMATS,
    SAMPLE_RATE,
    EspeakBackend,
    PiperBackend,
    SentenceSplitter,
    SpeechUnavailable,
    SpokenPcm,
    Synthesizer,
    UnknownVoice,
    VoiceEntry,
    split_sentences,
    wav_header,
)
from tests.audio_samples import decode, espeak_seconds, needs_espeak

PARAGRAPH = (
    "Tantra serves language models on a single machine. It speaks OpenAI's API, so every client works. "
    "Dr. Smith paid 3.50 dollars for it, e.g. the price of a coffee! Is that not remarkable? "
    "The answer is spoken sentence by sentence."
)


def test_sentences_of_a_whole_text() -> None:
    assert split_sentences(PARAGRAPH) == [
        "Tantra serves language models on a single machine.",
        "It speaks OpenAI's API, so every client works.",
        "Dr. Smith paid 3.50 dollars for it, e.g. the price of a coffee!",
        "Is that not remarkable?",
        "The answer is spoken sentence by sentence.",
    ]
    assert split_sentences('He said "stop." Then he left.\n\nNew paragraph') == [
        'He said "stop."',
        "Then he left.",
        "New paragraph",
    ]
    assert split_sentences("J. R. R. Tolkien wrote it in 1937. Done") == [
        "J. R. R. Tolkien wrote it in 1937.",
        "Done",
    ]
    assert split_sentences("...  !!  ") == []


def test_sentences_of_streamed_text_come_out_as_soon_as_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello the") == []
    assert splitter.feed("re. How are") == ["Hello there."]
    assert splitter.feed(" you? It costs 3.") == ["How are you?"]
    assert splitter.feed("14 dollars.") == []  # the period may be followed by more
    assert splitter.feed(" Bye") == ["It costs 3.14 dollars."]
    assert splitter.flush() == ["Bye"]
    assert splitter.flush() == []
    # Delta by delta, one character at a time, gives the same sentences as the whole text.
    piecewise = SentenceSplitter()
    out = [s for ch in PARAGRAPH for s in piecewise.feed(ch)] + piecewise.flush()
    assert out == split_sentences(PARAGRAPH)


def test_a_long_sentence_is_cut_at_a_comma_or_space() -> None:
    text = ", ".join(f"item number {i}" for i in range(60)) + "."
    pieces = split_sentences(text, max_chars=120)
    assert len(pieces) > 5 and all(len(p) <= 120 for p in pieces)
    assert " ".join(pieces) == text
    assert all(p.endswith(",") or p.endswith(".") for p in pieces)
    splitter = SentenceSplitter(max_chars=50)
    assert splitter.feed("word " * 30)  # no punctuation yet, but too long to wait for
    assert all(len(p) <= 50 for p in splitter.flush())


@pytest.fixture
def synthesizer() -> Synthesizer:
    return Synthesizer([EspeakBackend()], concurrency=2)


@needs_espeak
async def test_voices(synthesizer: Synthesizer) -> None:
    for name in ("alloy", "Nova", "en-gb", "en-us+f3", "de", "English_(America)"):
        voice = await synthesizer.voice(name)
        assert voice.backend.name == "espeak-ng"
    assert (await synthesizer.voice("onyx")).name == "en-us+m7"
    for bad in ("no-such-voice", "en-us+nonsense", "-w/tmp/x", "alloy "):
        with pytest.raises(UnknownVoice) as caught:
            await synthesizer.voice(bad)
        assert caught.value.param == "voice" and caught.value.status == 400
        assert "alloy" in caught.value.message


@needs_espeak
@pytest.mark.parametrize("response_format", RESPONSE_FORMATS)
async def test_every_format_decodes_at_espeaks_length(synthesizer: Synthesizer, response_format: str) -> None:
    audio = await synthesizer.speak(PARAGRAPH, "alloy", response_format)  # type: ignore[arg-type]
    if response_format == "pcm":
        audio = wav_header(len(audio)) + audio
    seconds, rate, channels = decode(audio)
    expected = espeak_seconds(PARAGRAPH, voice="en-us+f4")
    # Spoken sentence by sentence, each with eSpeak's pauses at its ends: a little longer than whole.
    assert expected * 0.9 <= seconds <= expected * 1.3, (seconds, expected)
    assert channels == 1
    assert rate == (48_000 if response_format == "opus" else SAMPLE_RATE)  # Opus always decodes at 48k


@needs_espeak
async def test_speed(synthesizer: Synthesizer) -> None:
    async def seconds(speed: float) -> float:
        return len(await synthesizer.speak(PARAGRAPH, "echo", "pcm", speed)) / 2 / SAMPLE_RATE

    normal, double, quarter, fastest = await asyncio.gather(
        seconds(1.0), seconds(2.0), seconds(0.25), seconds(4)
    )
    assert 0.4 <= double / normal <= 0.6, (normal, double)
    assert 3.2 <= quarter / normal <= 4.6, (normal, quarter)  # past eSpeak's slowest: stretched
    assert fastest < double


class _Counting(EspeakBackend):
    """Real eSpeak NG, counting the sentences it has spoken."""

    spoken = 0

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        pcm = await super().synthesize(text, voice, speed)
        self.spoken += 1
        return pcm


@needs_espeak
async def test_pcm_is_streamed_sentence_by_sentence() -> None:
    backend = _Counting()
    synthesizer = Synthesizer([backend], concurrency=2, lookahead=2)
    text = " ".join(f"This is sentence number {i} of a long answer." for i in range(12))
    voice = await synthesizer.voice("alloy")
    spoken_at: list[int] = []
    async for chunk in synthesizer.stream_pcm(text, voice):
        spoken_at.append(backend.spoken)
        assert len(chunk) % 2 == 0
        assert len(chunk) <= 0.25 * SAMPLE_RATE * 2  # a sentence's audio comes in pieces
    assert len(spoken_at) >= 12  # and the resampler's last few samples
    # The first sentence is handed over when at most the lookahead's sentences more are made.
    assert spoken_at[0] <= 3, spoken_at
    assert spoken_at[-1] == 12


@needs_espeak
async def test_text_arriving_in_pieces_is_spoken_as_sentences_complete(synthesizer: Synthesizer) -> None:
    released = asyncio.Event()

    async def llm() -> AsyncIterator[str]:
        for word in ["The", "first", "sentence", "is", "done.", "The", "second"]:
            yield word + " "
        await released.wait()  # the model is still thinking
        yield "one ends here."

    stream = synthesizer.stream_pcm(llm(), "nova")
    first = await asyncio.wait_for(anext(stream), 10)  # spoken while the text is not finished
    assert first and len(first) % 2 == 0
    released.set()
    rest = [chunk async for chunk in stream]
    assert rest


@needs_espeak
async def test_a_caller_that_stops_early_stops_espeak(synthesizer: Synthesizer) -> None:
    text = " ".join(f"Sentence {i} is here." for i in range(200))
    stream = synthesizer.stream(text, "alloy", "mp3")
    assert await anext(stream)
    await stream.aclose()
    await asyncio.sleep(0.2)
    assert not _espeak_children()


def _espeak_children() -> list[str]:
    """eSpeak processes of this test process."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                comm = stat.split("(")[1].split(")")[0]
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == os.getpid() and "espeak" in comm:
                found.append(proc.name)
    return found


async def test_a_missing_espeak_is_reported_as_unavailable() -> None:
    synthesizer = Synthesizer([EspeakBackend("no-such-espeak-binary")])
    with pytest.raises(SpeechUnavailable) as caught:
        await synthesizer.voice("alloy")
    assert caught.value.status == 503
    assert "espeak-ng" in caught.value.message


class _Tone:
    """A stand-in backend at 16 kHz: checks the pipeline resamples whatever rate a backend makes."""

    name = "tone"

    async def has_voice(self, voice: str) -> bool:
        return voice == "tone"

    async def voices(self) -> list[str]:
        return ["tone"]

    async def catalog(self) -> list[VoiceEntry]:
        return [VoiceEntry("tone", "xx", self.name)]

    async def synthesize(self, text: str, voice: str, speed: float) -> SpokenPcm:
        samples = int(16_000 * 0.5 / speed)
        return SpokenPcm(struct.pack(f"<{samples}h", *([1000, -1000] * (samples // 2))), 16_000)


@needs_espeak
async def test_backends_are_asked_in_order_and_resampled_to_24k() -> None:
    synthesizer = Synthesizer([_Tone(), EspeakBackend()])
    assert (await synthesizer.voice("tone")).backend.name == "tone"
    assert (await synthesizer.voice("alloy")).backend.name == "espeak-ng"
    pcm = b"".join([c async for c in synthesizer.stream_pcm("One. Two. Three.", "tone")])
    assert abs(len(pcm) / 2 / SAMPLE_RATE - 1.5) < 0.01


async def test_piper_without_its_package_says_how_to_install_it(tmp_path: Path) -> None:
    try:
        import piper  # noqa: F401

        pytest.skip("piper-tts is installed (test_a_piper_voice speaks)")
    except ImportError:
        pass
    voice = tmp_path / "amy.onnx"
    voice.write_bytes(b"not a model")
    synthesizer = Synthesizer([PiperBackend({"amy": voice}), EspeakBackend()])
    resolved = await synthesizer.voice("amy")
    assert resolved.backend.name == "piper"
    with pytest.raises(SpeechUnavailable) as caught:
        await synthesizer.speak("Hello.", resolved)
    assert "tantra[piper]" in caught.value.message


async def test_a_piper_voice_speaks(tmp_path: Path) -> None:
    """Piper's own loading, phonemizing and ONNX inference, on a voice built here (tests/piper_voice.py)."""
    pytest.importorskip("piper")
    pytest.importorskip("onnx")
    from tests.piper_voice import HOP, build_piper_voice
    from tests.piper_voice import SAMPLE_RATE as PIPER_RATE

    synthesizer = Synthesizer([PiperBackend({"alloy": build_piper_voice(tmp_path)}), EspeakBackend()])
    voice = await synthesizer.voice("alloy")
    assert voice.backend.name == "piper"  # a Piper voice's name wins over OpenAI's eSpeak alias

    async def seconds(speed: float) -> float:
        return (
            len(await synthesizer.speak("Hello there. A second sentence.", voice, "pcm", speed))
            / 2
            / SAMPLE_RATE
        )

    normal, double = await asyncio.gather(seconds(1.0), seconds(2.0))
    assert 0.3 < normal < 3  # about one hop per phoneme id, resampled from 22.05 kHz
    assert abs(double / normal - 0.5) < 0.05
    assert HOP and PIPER_RATE != SAMPLE_RATE
    audio, rate, _ = decode(await synthesizer.speak("Hello there.", voice, "mp3"))
    assert audio > 0.1 and rate == SAMPLE_RATE
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    (tmp_path / "broken.onnx.json").write_text((tmp_path / "tone.onnx.json").read_text())
    bad = Synthesizer([PiperBackend({"broken": broken})])
    with pytest.raises(SpeechUnavailable) as caught:
        await bad.speak("Hello.", "broken")
    assert "could not be loaded" in caught.value.message
