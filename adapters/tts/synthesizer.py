"""The speech service the gateway's routes (and the realtime endpoint) call: text in, audio out as it
is made, sentence by sentence, with bounded synthesis concurrency and nothing on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from adapters.tts.audio import SAMPLE_RATE, SAMPLE_WIDTH, AudioFormat, Resampler, SpokenPcm, encoder
from adapters.tts.backends import SpeechBackend
from adapters.tts.errors import UnknownVoice, UnsupportedLanguage
from adapters.tts.languages import LanguageDetector, language_code, language_region
from adapters.tts.loudness import Loudness, normalize
from adapters.tts.sentences import SentenceSplitter, split_sentences
from adapters.tts.voices import VoiceEntry, gender_of, pick, regional

# OpenAI's voices, as eSpeak NG voice+variant: the accent and register each is described with.
OPENAI_VOICES: Mapping[str, str] = {
    "alloy": "en-us+f4",
    "ash": "en-us+m3",
    "ballad": "en-gb-x-rp+m2",
    "coral": "en-us+f3",
    "echo": "en-us+m1",
    "fable": "en-gb+m4",
    "onyx": "en-us+m7",
    "nova": "en-us+f2",
    "sage": "en-gb+f1",
    "shimmer": "en-us+f5",
    "verse": "en-us+m6",
    "marin": "en-us+f1",
    "cedar": "en-gb-scotland+m5",
}

MIN_SPEED, MAX_SPEED = 0.25, 4.0


@dataclass(frozen=True)
class Voice:
    """A requested voice resolved to the backend that speaks it and that backend's own name for it."""

    requested: str
    backend: SpeechBackend
    name: str
    # The language it was picked for (given, or detected from the text); None: the voice's own.
    language: str | None = None


@dataclass
class Detecting:
    """A voice whose language is found in the text it speaks, for a text not known when the voice is
    chosen (a chat answer the engine is still writing): each sentence is spoken by the voice its
    language picks (Synthesizer.voice with the sentence as its text) until one's language is found;
    that voice is kept for the rest, so the voice changes at most once, and only from the requested
    voice's own. `voice` is the one speaking now (the found one, once found)."""

    voice: Voice

    @property
    def found(self) -> bool:
        return self.voice.language is not None


class Synthesizer:
    """Speaks text with the first backend that knows the voice.

    Backends are asked in order, so a Piper voice named `alloy` wins over eSpeak's `alloy`; OpenAI's
    voice names not claimed by a backend map to eSpeak NG voices (OPENAI_VOICES), and any other name
    is passed to the backends as it is (`de`, `en-gb+f3`, a Piper voice's name).

    OpenAI's voices speak every language, so one of their names is a character rather than a voice:
    given a language (or a text whose language `detector` finds), it becomes that language's voice
    (voices.pick: the first backend's, of the same gender; eSpeak's with the same variant). A name
    a backend speaks itself is spoken as it is, whatever the language.
    """

    def __init__(
        self,
        backends: Sequence[SpeechBackend],
        *,
        concurrency: int = 2,
        aliases: Mapping[str, str] = OPENAI_VOICES,
        max_sentence_chars: int = 300,
        lookahead: int = 2,
        chunk_seconds: float = 0.25,
        loudness: Loudness | None = None,
        detector: LanguageDetector | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a Synthesizer needs at least one backend")
        self._backends = tuple(backends)
        self._aliases = dict(aliases)
        self._slots = asyncio.Semaphore(concurrency)
        self._max_sentence_chars = max_sentence_chars
        self._lookahead = lookahead
        # A sentence's audio goes out in pieces of at most this much: a realtime client gets
        # deltas of a size it can take (OpenAI's are a fraction of a second), HTTP a steady flow.
        self._chunk_bytes = max(2, round(chunk_seconds * SAMPLE_RATE)) * SAMPLE_WIDTH
        # Each sentence is brought to this loudness on its own (loudness.py), as it is made: a
        # stream cannot wait for its end to be measured whole. None: as the backend made it.
        self._loudness = loudness
        self._detector = detector
        self._catalog: list[VoiceEntry] | None = None

    def backend(self, name: str) -> SpeechBackend | None:
        """The backend of this name (`coqui`, `piper`, ...), if the synthesizer has one."""
        return next((backend for backend in self._backends if backend.name == name), None)

    async def catalog(self) -> list[VoiceEntry]:
        """Every backend's voices, in the backends' order (cached: the voices are installed ones)."""
        if self._catalog is None:
            self._catalog = [entry for backend in self._backends for entry in await backend.catalog()]
        return self._catalog

    async def languages(self) -> list[str]:
        return sorted({entry.language for entry in await self.catalog()})

    async def voice(self, requested: str, *, language: str | None = None, text: str | None = None) -> Voice:
        """Resolve a voice name for `language` (or the language of `text`, when a detector is set),
        or raise UnknownVoice (a 400 naming `voice`) or UnsupportedLanguage (naming `language`)."""
        wanted = None if language is None else await self._speakable(language)
        for backend in self._backends:
            if await backend.has_voice(requested):
                return Voice(requested, backend, requested)
        alias = self._aliases.get(requested.lower())
        if alias is None:
            raise UnknownVoice(
                requested, ", ".join(self._aliases) + ", or an eSpeak NG voice such as en-gb+f3"
            )
        if wanted is None and text is not None and self._detector is not None:
            wanted = await asyncio.to_thread(self._detector.detect, text, await self.languages())
        base, _, variant = alias.partition("+")
        detected = language is None
        region = None if language is None else language_region(language)
        if wanted is not None and (
            wanted != language_code(base) or await self._other_region(base, wanted, region)
        ):
            entry = pick(await self.catalog(), wanted, gender_of(variant), region)
            if entry is not None:
                voice = await self._entry_voice(requested, entry, variant, wanted)
                if not detected or text is None or _reads(voice.backend, text):
                    return voice
                wanted = None  # a guess its voice cannot read: the voice's own language speaks it
        return await self._named(requested, alias, wanted)

    def detecting(self, voice: Voice) -> Voice | Detecting:
        """`voice` for a text to come: one of OpenAI's names resolved without a language, with a
        detector set, finds its language in the text as it is spoken (Detecting); any other voice
        (an explicit one, a given language, no detector) is spoken as it is."""
        alias = voice.name != voice.requested and voice.requested.lower() in self._aliases
        if self._detector is None or voice.language is not None or not alias:
            return voice
        return Detecting(voice)

    async def _other_region(self, base: str, language: str, region: str | None) -> bool:
        """Whether a region given (`en-GB`) has a voice of its own that the alias's (`en-us`) is
        not: a region no voice is named for keeps the alias's (`en-AU`: `en-us`), as does one the
        alias already speaks (`ballad`'s `en-gb-x-rp` for `en-GB`)."""
        if region is None or base.lower() == region or base.lower().startswith(region + "-"):
            return False
        return regional(await self.catalog(), language, region) is not None

    async def _speakable(self, language: str) -> str:
        code = language_code(language)
        if code not in await self.languages():
            raise UnsupportedLanguage(language, ", ".join(await self.languages()))
        return code

    async def _entry_voice(self, requested: str, entry: VoiceEntry, variant: str, language: str) -> Voice:
        backend = next(b for b in self._backends if b.name == entry.backend)
        name = entry.name
        # eSpeak NG's voices take the OpenAI voice's variant (`alloy` in French: `fr+f4`).
        if variant and await backend.has_voice(f"{name}+{variant}"):
            name = f"{name}+{variant}"
        return Voice(requested, backend, name, language)

    async def _named(self, requested: str, name: str, language: str | None) -> Voice:
        for backend in self._backends:
            if await backend.has_voice(name):
                return Voice(requested, backend, name, language)
        raise UnknownVoice(requested, ", ".join(self._aliases) + ", or an eSpeak NG voice such as en-gb+f3")

    async def stream_pcm(
        self, text: str | AsyncIterable[str], voice: str | Voice | Detecting, speed: float = 1.0
    ) -> AsyncGenerator[bytes, None]:
        """16-bit mono PCM at 24 kHz, each sentence as soon as it is made (in pieces of at most
        `chunk_seconds`, cut at whole samples).

        `text` is a whole text, or text arriving in pieces (an LLM's deltas): its sentences are
        spoken as each completes. Up to `lookahead` sentences are synthesised ahead of the one the
        caller is handling. Leaving the loop early stops the synthesis under way. A `Detecting`
        voice is resolved sentence by sentence, in order, until a language is found.
        """
        resolved = await self.voice(voice) if isinstance(voice, str) else voice
        speed = min(max(speed, MIN_SPEED), MAX_SPEED)
        ready: asyncio.Queue[asyncio.Task[SpokenPcm] | None] = asyncio.Queue(self._lookahead)
        started: list[asyncio.Task[SpokenPcm]] = []
        producer = asyncio.ensure_future(
            self._produce(self._sentences(text), resolved, speed, ready, started)
        )
        resampler = Resampler()
        try:
            while (task := await ready.get()) is not None:
                pcm = await task
                started.remove(task)
                audio = await asyncio.to_thread(resampler.convert, pcm)
                for start in range(0, len(audio), self._chunk_bytes):
                    yield audio[start : start + self._chunk_bytes]
            await producer  # raises what reading the text raised
            tail = resampler.flush()
            if tail:
                yield tail
        finally:
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
            for task in started:
                task.cancel()
                task.add_done_callback(_quietly)

    async def stream(
        self,
        text: str | AsyncIterable[str],
        voice: str | Voice | Detecting,
        response_format: AudioFormat = "mp3",
        speed: float = 1.0,
        *,
        on_samples: Callable[[int], None] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """`text` spoken in `response_format`, encoded as it is made: the first bytes come once the
        first sentence is spoken. Resolve the voice first (`voice()`) to have UnknownVoice raised
        before anything is sent. `on_samples` hears how many samples (at SAMPLE_RATE) each piece
        holds, before it is encoded: what was spoken, whatever the format."""
        codec = encoder(response_format)
        pcm = self.stream_pcm(text, voice, speed)
        try:
            async for chunk in pcm:
                if on_samples is not None:
                    on_samples(len(chunk) // SAMPLE_WIDTH)
                encoded = await asyncio.to_thread(codec.encode, chunk)
                if encoded:
                    yield encoded
            tail = await asyncio.to_thread(codec.finish)
            if tail:
                yield tail
        finally:
            await pcm.aclose()

    async def speak(
        self,
        text: str,
        voice: str | Voice | Detecting,
        response_format: AudioFormat = "wav",
        speed: float = 1.0,
    ) -> bytes:
        """The whole of `text` spoken, as one file."""
        return b"".join([chunk async for chunk in self.stream(text, voice, response_format, speed)])

    async def _sentences(self, text: str | AsyncIterable[str]) -> AsyncIterator[str]:
        if isinstance(text, str):
            for sentence in split_sentences(text, max_chars=self._max_sentence_chars):
                yield sentence
            return
        splitter = SentenceSplitter(max_chars=self._max_sentence_chars)
        async for delta in text:
            for sentence in splitter.feed(delta):
                yield sentence
        for sentence in splitter.flush():
            yield sentence

    async def _produce(
        self,
        sentences: AsyncIterator[str],
        voice: Voice | Detecting,
        speed: float,
        ready: asyncio.Queue[asyncio.Task[SpokenPcm] | None],
        started: list[asyncio.Task[SpokenPcm]],
    ) -> None:
        try:
            async for sentence in sentences:
                spoken = await self.resolve(voice, sentence)
                task = asyncio.ensure_future(self._synthesize(sentence, spoken, speed))
                started.append(task)
                await ready.put(task)
        except asyncio.CancelledError:
            raise
        except BaseException:
            await ready.put(None)  # the consumer finds the end, then the error when it awaits this task
            raise
        await ready.put(None)

    async def resolve(self, voice: Voice | Detecting, text: str) -> Voice:
        """The voice that speaks `text`: a `Detecting` one takes the language found in it, unless
        an earlier text's was found (then kept); any other voice is itself."""
        if isinstance(voice, Voice):
            return voice
        if not voice.found:
            voice.voice = await self.voice(voice.voice.requested, text=text)
        return voice.voice

    async def _synthesize(self, sentence: str, voice: Voice, speed: float) -> SpokenPcm:
        async with self._slots:
            pcm = await voice.backend.synthesize(sentence, voice.name, speed)
        if self._loudness is not None:
            pcm = await asyncio.to_thread(normalize, pcm, self._loudness)
        return pcm


def _reads(backend: SpeechBackend, text: str) -> bool:
    """A backend that may not read every text of its languages says so with `reads` (Kokoro without
    a kanji dictionary); the others read all of it."""
    reads = getattr(backend, "reads", None)
    return True if reads is None else bool(reads(text))


def _quietly(task: asyncio.Task[SpokenPcm]) -> None:
    """A sentence nobody will hear: its error, if any, is not worth a warning."""
    if not task.cancelled():
        task.exception()
