"""Who spoke when: speaker diarization from Resemblyzer's voice encoder and clustering.

The audio's speech is found by its energy (10 ms frames, a level relative to the loudest), cut into
windows of 1.5 s every 0.5 s, and each window is embedded by Resemblyzer's `VoiceEncoder` (a
3-layer LSTM trained on thousands of speakers, GE2E loss; its trained weights ship inside the
`resemblyzer` wheel, nothing is downloaded). The windows are then grouped:

- with named reference clips, each window goes to the reference it is closest to (cosine), so the
  names fix both how many speakers there are and what they are called;
- without, by agglomerative clustering (average linkage on cosine distance) cut where clusters are
  further apart than `threshold`; the speakers are named `A`, `B`, ... in order of first speech.

Each 10 ms frame of speech takes the speaker of the window centred nearest to it, and runs of one
speaker become turns. Pure numpy here except the encoder itself (torch, through `resemblyzer`,
imported only when a `SpeakerEncoder` is built): the mel spectrogram is Resemblyzer's own (40
Slaney mel bands, 25 ms windows, 10 ms hop, power), computed here so librosa is never called.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapters.stt.audio import SAMPLE_RATE

FRAME = SAMPLE_RATE // 100  # 10 ms: the mel hop, and the unit of every position below
_N_FFT = SAMPLE_RATE * 25 // 1000
_N_MELS = 40
WINDOW_FRAMES = 150  # 1.5 s of speech per embedding
HOP_FRAMES = 50  # a window every 0.5 s


@dataclass(frozen=True)
class SpeakerTurn:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class DiarizeOptions:
    threshold: float = 0.38  # cosine distance between clusters (average linkage) that splits speakers
    max_speakers: int = 8
    merge_gap_s: float = 0.5  # one speaker's turns closer than this are one turn
    silence_db: float = 40.0  # frames this far below the loudest are silence
    min_speech_s: float = 0.2


class SpeakerEncoder:
    """Resemblyzer's trained voice encoder on the CPU: mel windows to unit-length 256-d embeddings."""

    def __init__(self, threads: int = 1) -> None:
        import torch
        from resemblyzer import VoiceEncoder

        torch.set_num_threads(threads)
        self._torch = torch
        self._model = VoiceEncoder("cpu", verbose=False)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            out: Any = self._model(self._torch.from_numpy(np.ascontiguousarray(windows, np.float32)))
        return np.asarray(out.numpy(), dtype=np.float32)


def mel_frames(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram as Resemblyzer's encoder was trained on (librosa's
    defaults: centred frames, zero padding, periodic Hann window, Slaney mel scale and norm)."""
    padded = np.pad(np.asarray(samples, np.float32), _N_FFT // 2)
    count = 1 + (len(padded) - _N_FFT) // FRAME
    if count <= 0:
        return np.zeros((0, _N_MELS), np.float32)
    index = np.arange(_N_FFT)[None, :] + FRAME * np.arange(count)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)
    power = np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2
    return (power @ _mel_filters().T).astype(np.float32)


def speech_regions(samples: np.ndarray, options: DiarizeOptions | None = None) -> list[tuple[int, int]]:
    """Spans of speech as [start, end) in 10 ms frames: frames within `silence_db` of the loudest
    (and above -60 dBFS), pauses under 0.3 s bridged, blips under `min_speech_s` dropped."""
    options = options or DiarizeOptions()
    count = len(samples) // FRAME
    if count == 0:
        return []
    frames = np.asarray(samples[: count * FRAME], np.float64).reshape(count, FRAME)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    voiced = level > max(float(level.max()) - options.silence_db, -60.0)
    regions: list[tuple[int, int]] = []
    for start, end in _runs(voiced):
        if regions and start - regions[-1][1] < 30:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    shortest = round(options.min_speech_s * 100)
    return [(start, end) for start, end in regions if end - start >= shortest]


def reference_embedding(samples: np.ndarray, encoder: SpeakerEncoder) -> np.ndarray:
    """One speaker's voice: the mean of its clip's window embeddings, unit length."""
    mel = mel_frames(samples)
    regions = speech_regions(samples) or [(0, len(mel))]
    starts = [start for region in regions for start in _window_starts(region, len(mel))]
    embeddings = encoder.embed(_windows(mel, starts))
    mean = embeddings.mean(axis=0)
    return np.asarray(mean / (np.linalg.norm(mean) + 1e-9), np.float32)


def diarize(
    samples: np.ndarray,
    encoder: SpeakerEncoder,
    references: Sequence[tuple[str, np.ndarray]] = (),
    options: DiarizeOptions | None = None,
) -> list[SpeakerTurn]:
    """The speaker turns of `samples` (16 kHz mono float32), in time order. `references` are
    (name, clip samples) of known speakers: every turn is then one of them."""
    options = options or DiarizeOptions()
    regions = speech_regions(samples, options)
    if not regions:
        return []
    mel = mel_frames(samples)
    windows = [
        (index, start) for index, region in enumerate(regions) for start in _window_starts(region, len(mel))
    ]
    embeddings = encoder.embed(_windows(mel, [start for _, start in windows]))
    if references:
        known = np.stack([reference_embedding(clip, encoder) for _, clip in references])
        labels = np.argmax(embeddings @ known.T, axis=1)
        names = [name for name, _ in references]
    else:
        labels = cluster(embeddings, options.threshold, options.max_speakers)
        names = [_letters(n) for n in range(int(labels.max()) + 1)]
    labels = _smoothed(labels, [index for index, _ in windows])
    centres = np.array([start + WINDOW_FRAMES / 2 for _, start in windows])
    turns: list[SpeakerTurn] = []
    for index, (start, end) in enumerate(regions):
        mine = np.array([n for n, (region, _) in enumerate(windows) if region == index])
        frames = np.arange(start, end)
        nearest = mine[np.argmin(np.abs(centres[mine][None, :] - (frames[:, None] + 0.5)), axis=1)]
        for run_start, run_end in _label_runs(labels[nearest]):
            speaker = names[int(labels[nearest[run_start]])]
            turns.append(SpeakerTurn((start + run_start) / 100, (start + run_end) / 100, speaker))
    return _merged(turns, options.merge_gap_s)


def cluster(embeddings: np.ndarray, threshold: float, max_speakers: int) -> np.ndarray:
    """Cluster numbers (0, 1, ... in order of first appearance) by average-linkage agglomerative
    clustering on cosine distance, cut where clusters are `threshold` apart (at most `max_speakers`)."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(embeddings.astype(np.float64), method="average", metric="cosine")
    raw = fcluster(tree, t=threshold, criterion="distance")
    if raw.max() > max_speakers:
        raw = fcluster(tree, t=max_speakers, criterion="maxclust")
    raw = _absorb_singletons(embeddings, raw)
    order = {label: number for number, label in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[label] for label in raw.tolist()], np.int64)


def _absorb_singletons(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A cluster of one window (a short utterance, or a cough) is not a speaker of its own while
    larger clusters exist: it joins the one whose centroid is closest."""
    sizes = {label: int((labels == label).sum()) for label in set(labels.tolist())}
    large = [label for label, size in sizes.items() if size > 1]
    if not large or len(large) == len(sizes):
        return labels
    centroids = np.stack([embeddings[labels == label].mean(axis=0) for label in large])
    out = labels.copy()
    for n in np.flatnonzero([sizes[label] == 1 for label in labels.tolist()]):
        out[n] = large[int(np.argmax(centroids @ embeddings[n]))]
    return out


def _window_starts(region: tuple[int, int], total: int) -> list[int]:
    """Window starts covering `region`; a region shorter than a window gets one centred on it."""
    start, end = region
    if end - start <= WINDOW_FRAMES:
        centred = (start + end - WINDOW_FRAMES) // 2
        return [max(0, min(centred, total - WINDOW_FRAMES))]
    starts = list(range(start, end - WINDOW_FRAMES + 1, HOP_FRAMES))
    if starts[-1] != end - WINDOW_FRAMES:
        starts.append(end - WINDOW_FRAMES)
    return starts


def _windows(mel: np.ndarray, starts: Sequence[int]) -> np.ndarray:
    if len(mel) < WINDOW_FRAMES:
        mel = np.pad(mel, ((0, WINDOW_FRAMES - len(mel)), (0, 0)))
    return np.stack([mel[start : start + WINDOW_FRAMES] for start in starts])


def _smoothed(labels: np.ndarray, regions: Sequence[int]) -> np.ndarray:
    """A window whose two neighbours (in its region) agree with each other takes their speaker."""
    out = labels.copy()
    for n in range(1, len(labels) - 1):
        if regions[n - 1] == regions[n] == regions[n + 1] and labels[n - 1] == labels[n + 1]:
            out[n] = labels[n - 1]
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _label_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    cuts = [0, *(np.flatnonzero(np.diff(labels)) + 1).tolist(), len(labels)]
    return list(itertools.pairwise(cuts))


def _merged(turns: list[SpeakerTurn], gap_s: float) -> list[SpeakerTurn]:
    merged: list[SpeakerTurn] = []
    for turn in turns:
        last = merged[-1] if merged else None
        if last is not None and last.speaker == turn.speaker and turn.start - last.end < gap_s:
            merged[-1] = SpeakerTurn(last.start, turn.end, turn.speaker)
        else:
            merged.append(turn)
    return merged


def _letters(number: int) -> str:
    """A, B, ..., Z, AA, AB, ..."""
    name = ""
    number += 1
    while number:
        number, rest = divmod(number - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


_filters: np.ndarray | None = None


def _mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney's mel scale and area norm."""
    global _filters
    if _filters is None:
        bins = np.linspace(0, SAMPLE_RATE / 2, 1 + _N_FFT // 2)
        edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), _N_MELS + 2))
        ramps = edges[:, None] - bins[None, :]
        widths = np.diff(edges)
        lower = -ramps[:-2] / widths[:-1, None]
        upper = ramps[2:] / widths[1:, None]
        weights = np.maximum(0, np.minimum(lower, upper))
        _filters = (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)
    return _filters


_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    return hz / (200 / 3) if hz < 1000 else 15.0 + float(np.log(hz / 1000) / _LOG_STEP)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    linear = mels * (200 / 3)
    return np.where(mels >= 15.0, 1000 * np.exp(_LOG_STEP * (mels - 15.0)), linear)
