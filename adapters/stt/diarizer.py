"""The async diarization service, and the speaker check of custom voices: Resemblyzer's voice
encoder in worker processes of their own.

Each worker (started from the forkserver, niced below the gateway and vLLM like the whisper
workers) loads torch and the encoder once, on its first job; the gateway's process never imports
either. A worker that dies fails only its own request and the pool is rebuilt.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import structlog

from adapters.errors import MediaError
from adapters.stt.diarization import (
    DiarizeOptions,
    SpeakerEncoder,
    SpeakerTurn,
    diarize,
    reference_embedding,
)
from adapters.stt.lazy_pool import LazyPool

_log = structlog.stdlib.get_logger("tantra.speech")


def diarization_installed() -> bool:
    """Whether the `diarization` extra (resemblyzer, with torch) is installed."""
    return (
        importlib.util.find_spec("resemblyzer") is not None and importlib.util.find_spec("torch") is not None
    )


class Diarizer:
    """`await diarize(samples, references)`: speaker turns of 16 kHz mono float32 samples, named by
    the (name, samples) references when given, else `A`, `B`, ..."""

    def __init__(
        self, *, workers: int = 1, threads: int = 1, nice: int = 10, options: DiarizeOptions | None = None
    ) -> None:
        self.options = options or DiarizeOptions()
        self._threads = threads
        self._pool = LazyPool(workers, nice)

    async def diarize(
        self, samples: np.ndarray, references: Sequence[tuple[str, np.ndarray]] = ()
    ) -> list[SpeakerTurn]:
        job = functools.partial(_diarize, samples, tuple(references), self.options, self._threads)
        try:
            return await self._pool.run(job)
        except BrokenProcessPool:
            _log.error("diarization_worker_died")
            raise MediaError(
                None, "The diarization worker stopped on this audio.", code="diarization_failed", status=500
            ) from None

    async def close(self) -> None:
        await self._pool.close()


class SpeakerCheck:
    """`await similarity(a, b)`: how alike the voices of two 16 kHz mono clips are, the cosine of
    their speaker embeddings (1: the same). Custom voices use it to refuse a reference clip that is
    not the consenting speaker's; one worker, started on the first check."""

    def __init__(self, *, threads: int = 1, nice: int = 10) -> None:
        self._threads = threads
        self._pool = LazyPool(1, nice)

    async def similarity(self, first: np.ndarray, second: np.ndarray) -> float:
        try:
            return await self._pool.run(functools.partial(_similarity, first, second, self._threads))
        except BrokenProcessPool:
            _log.error("speaker_check_worker_died")
            raise MediaError(
                None,
                "The speaker check's worker stopped on this audio.",
                code="speaker_check_failed",
                status=500,
            ) from None

    async def close(self) -> None:
        await self._pool.close()


_encoder: SpeakerEncoder | None = None


def _loaded(threads: int) -> SpeakerEncoder:
    """In a worker: the encoder, loaded once per process."""
    global _encoder
    if _encoder is None:
        _encoder = SpeakerEncoder(threads)
    return _encoder


def _diarize(
    samples: np.ndarray, references: Sequence[tuple[str, np.ndarray]], options: DiarizeOptions, threads: int
) -> list[SpeakerTurn]:
    return diarize(samples, _loaded(threads), references, options)


def _similarity(first: np.ndarray, second: np.ndarray, threads: int) -> float:
    encoder = _loaded(threads)
    return float(reference_embedding(first, encoder) @ reference_embedding(second, encoder))
