"""Audio analysis on its own: random-weight audio-classification checkpoints built locally in both
architectures (wav2vec2 and AST, engine/audio_classifier.py) give labels from their own `id2label`
and scores that sum to 1, overall and per span, in-process and in the worker processes. The labels
of random weights mean nothing: what is checked is the path, not the verdict."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from adapters.stt import SAMPLE_RATE, AudioAnalyzer, analysis_installed
from adapters.stt.analysis import Classifier, analyze

pytestmark = pytest.mark.skipif(not analysis_installed(), reason="torch and transformers are not installed")


def _labels(checkpoint: Path) -> set[str]:
    return set(json.loads((checkpoint / "config.json").read_text())["id2label"].values())


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)


@pytest.mark.parametrize("fixture", ["emotion_checkpoint", "events_checkpoint"])
def test_labels_are_the_checkpoints_and_scores_sum_to_one(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    checkpoint: Path = request.getfixturevalue(fixture)
    classifier = Classifier(checkpoint)
    labels = _labels(checkpoint)
    assert set(classifier.labels) == labels
    # 12 s: two chunks (CHUNK_S is 10 s); a 50 ms span is padded; a span past the end is too.
    result = analyze(classifier, _noise(12.0), [(0.0, 1.0), (1.0, 1.05), (11.0, 14.0)], top_k=10)
    for top in [result.overall, *result.spans]:
        assert {label.label for label in top} == labels
        assert sum(label.score for label in top) == pytest.approx(1.0, abs=1e-4)
        assert [label.score for label in top] == sorted((label.score for label in top), reverse=True)
    assert len(result.spans) == 3
    assert len(analyze(classifier, _noise(1.0), [], top_k=2).overall) == 2


def test_the_analyzer_runs_both_kinds_in_worker_processes(
    emotion_checkpoint: Path, events_checkpoint: Path
) -> None:
    analyzer = AudioAnalyzer({"emotion": emotion_checkpoint, "audio_events": events_checkpoint}, top_k=3)

    async def run() -> None:
        try:
            emotion, events = await asyncio.gather(
                analyzer.analyze("emotion", _noise(2.0), [(0.0, 1.0)]),
                analyzer.analyze("audio_events", _noise(2.0), [(0.0, 1.0), (1.0, 2.0)]),
            )
        finally:
            await analyzer.close()
        assert len(emotion.overall) == 3 and {x.label for x in emotion.overall} <= _labels(emotion_checkpoint)
        assert len(events.overall) == 3 and len(events.spans) == 2
        assert sum(x.score for x in events.overall) == pytest.approx(1.0, abs=1e-4)

    asyncio.run(run())
