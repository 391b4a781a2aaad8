"""Audio analysis: emotion recognition and audio event classification with any Hugging Face
audio-classification checkpoint (wav2vec2-, HuBERT-, WavLM- or AST-style), through transformers'
`AutoModelForAudioClassification` and the checkpoint's own feature extractor.

The labels are the checkpoint's `id2label` and the scores a softmax over all of them, so a
checkpoint's top-k scores sum to 1 when k covers its labels. Audio longer than `CHUNK_S` is cut
into chunks and their probabilities averaged (weighted by length): AST-style extractors truncate
to about 10 s. Pure CPU torch, imported only when a `Classifier` is built (in a worker process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.stt.audio import SAMPLE_RATE

CHUNK_S = 10.0
MIN_S = 0.5  # shorter clips (and segments) are zero-padded to this: wav2vec2's convolutions need samples


@dataclass(frozen=True)
class AudioLabel:
    label: str
    score: float


@dataclass(frozen=True)
class AnalysisResult:
    """Top-k labels of the whole audio and of each span asked for, in order."""

    overall: list[AudioLabel]
    spans: list[list[AudioLabel]]


class Classifier:
    """One checkpoint on the CPU: 16 kHz mono float32 samples to label probabilities."""

    def __init__(self, directory: Path, threads: int = 1) -> None:
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        torch.set_num_threads(threads)
        self._torch = torch
        self._extractor: Any = AutoFeatureExtractor.from_pretrained(directory)
        self._model: Any = AutoModelForAudioClassification.from_pretrained(directory).eval()
        id2label = self._model.config.id2label
        self.labels = [str(id2label[i]) for i in range(len(id2label))]
        rate = getattr(self._extractor, "sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{directory}: the feature extractor expects {rate} Hz audio, not {SAMPLE_RATE}")

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Softmax over the labels, averaged over the chunks of `samples`."""
        samples = np.asarray(samples, np.float32)
        minimum = int(MIN_S * SAMPLE_RATE)
        if len(samples) < minimum:
            samples = np.pad(samples, (0, minimum - len(samples)))
        step = int(CHUNK_S * SAMPLE_RATE)
        chunks = [samples[i : i + step] for i in range(0, len(samples), step)]
        if len(chunks) > 1 and len(chunks[-1]) < minimum:
            chunks[-2] = np.concatenate(chunks[-2:])
            chunks.pop()
        total = np.zeros(len(self.labels), np.float64)
        for chunk in chunks:
            inputs = self._extractor(chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            with self._torch.no_grad():
                logits = self._model(**inputs).logits[0].float()
            total += self._torch.softmax(logits, dim=-1).numpy() * len(chunk)
        return total / total.sum()

    def top(self, samples: np.ndarray, k: int) -> list[AudioLabel]:
        probabilities = self.probabilities(samples)
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [AudioLabel(self.labels[i], round(float(probabilities[i]), 6)) for i in order]


def analyze(
    classifier: Classifier, samples: np.ndarray, spans: Sequence[tuple[float, float]], top_k: int
) -> AnalysisResult:
    """The whole audio's labels, then each (start, end) span's in seconds."""
    cuts = [
        samples[int(start * SAMPLE_RATE) : max(int(end * SAMPLE_RATE), int(start * SAMPLE_RATE) + 1)]
        for start, end in spans
    ]
    return AnalysisResult(classifier.top(samples, top_k), [classifier.top(cut, top_k) for cut in cuts])
