"""The async audio-analysis service: audio-classification checkpoints in worker processes of their own.

As the diarizer (adapters/stt/diarizer.py): each worker (forkserver, niced like the whisper workers)
loads torch and a checkpoint once, on its first job for it; the gateway's process never imports
torch. A worker that dies fails only its own request and the pool is rebuilt.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import structlog

from adapters.errors import MediaError
from adapters.stt.analysis import AnalysisResult, Classifier, analyze
from adapters.stt.lazy_pool import LazyPool

_log = structlog.stdlib.get_logger("tantra.speech")


def analysis_installed() -> bool:
    """Whether torch and transformers are installed (the `analysis` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


class AudioAnalyzer:
    """`await analyze(kind, samples, spans)`: the top-k labels of the checkpoint configured for
    `kind` (`emotion`, `audio_events`), overall and per span."""

    def __init__(
        self,
        checkpoints: Mapping[str, Path],
        *,
        top_k: int = 5,
        workers: int = 1,
        threads: int = 1,
        nice: int = 10,
    ) -> None:
        self.checkpoints = dict(checkpoints)
        self.top_k = top_k
        self._threads = threads
        self._pool = LazyPool(workers, nice)

    async def analyze(
        self, kind: str, samples: np.ndarray, spans: Sequence[tuple[float, float]] = ()
    ) -> AnalysisResult:
        job = functools.partial(
            _analyze, self.checkpoints[kind], samples, tuple(spans), self.top_k, self._threads
        )
        try:
            return await self._pool.run(job)
        except BrokenProcessPool:
            _log.error("analysis_worker_died", kind=kind)
            raise MediaError(
                None, "The audio analysis worker stopped on this audio.", code="analysis_failed", status=500
            ) from None

    async def close(self) -> None:
        await self._pool.close()


_classifiers: dict[Path, Classifier] = {}


def _analyze(
    checkpoint: Path, samples: np.ndarray, spans: Sequence[tuple[float, float]], top_k: int, threads: int
) -> AnalysisResult:
    """In a worker: each checkpoint loaded once per process, then its labels."""
    classifier = _classifiers.get(checkpoint)
    if classifier is None:
        classifier = _classifiers[checkpoint] = Classifier(checkpoint, threads)
    return analyze(classifier, samples, spans, top_k)
