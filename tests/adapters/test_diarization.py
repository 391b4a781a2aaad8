"""Diarization's parts on their own: the mel spectrogram against Resemblyzer's own, the energy
segmentation, the clustering, and the turns (with a fake encoder that hears pitch, so that two tones
are two "voices"). The real encoder is tested end to end in tests/gateway/services/test_diarization.py."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.stt import SAMPLE_RATE, Segment, SpeakerTurn, Transcript, diarization_installed
from adapters.stt.diarization import DiarizeOptions, cluster, diarize, mel_frames, speech_regions
from gateway.services.diarized import with_text


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.float32)


class PitchEncoder:
    """A stand-in for the voice encoder: a window's embedding is its mean mel profile, unit length."""

    def embed(self, windows: np.ndarray) -> np.ndarray:
        profile = windows.mean(axis=1) + 1e-9
        return (profile / np.linalg.norm(profile, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.skipif(not diarization_installed(), reason="the `diarization` extra is not installed")
def test_the_mel_spectrogram_is_resemblyzers() -> None:
    from resemblyzer.audio import wav_to_mel_spectrogram

    samples = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE * 2).astype(np.float32)
    ours, theirs = mel_frames(samples), wav_to_mel_spectrogram(samples)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


def test_speech_is_found_by_energy() -> None:
    audio = np.concatenate(
        [silence(0.5), tone(200, 1.0), silence(0.1), tone(200, 0.5), silence(1.0), tone(300, 0.6)]
    )
    regions = speech_regions(audio)
    # The 0.1 s pause is bridged; the 1 s one is not.
    assert [(round(a / 100, 1), round(b / 100, 1)) for a, b in regions] == [(0.5, 2.1), (3.1, 3.7)]
    assert speech_regions(silence(1.0)) == []


def test_clusters_are_numbered_in_order_of_first_appearance() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(4, dtype=np.float32)[[2, 0]]
    points = np.stack([centres[n % 2] + rng.normal(0, 0.05, 4) for n in (1, 1, 0, 0, 1)])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert cluster(points, 0.3, 8).tolist() == [0, 0, 1, 1, 0]
    assert cluster(points, 0.3, 1).tolist() == [0] * 5  # at most one speaker
    assert cluster(points[:1], 0.3, 8).tolist() == [0]
    # A lone window far from both joins the nearer cluster rather than making a third speaker.
    odd = np.array([[0.6, 0.8, 0.0, 0.0]], np.float32)
    assert cluster(np.concatenate([points, odd]), 0.3, 8).tolist() == [0, 0, 1, 1, 0, 0]


def test_turns_follow_the_voices() -> None:
    audio = np.concatenate(
        [tone(150, 2.0), silence(0.6), tone(1200, 2.5), silence(0.6), tone(150, 1.8), silence(0.5)]
    )
    turns = diarize(audio, PitchEncoder(), options=DiarizeOptions(threshold=0.3))  # type: ignore[arg-type]
    assert [t.speaker for t in turns] == ["A", "B", "A"]
    for turn, (start, end) in zip(turns, [(0.0, 2.0), (2.6, 5.1), (5.7, 7.5)], strict=True):
        assert turn.start == pytest.approx(start, abs=0.05) and turn.end == pytest.approx(end, abs=0.05)
    named = diarize(audio, PitchEncoder(), [("low", tone(150, 2.0)), ("high", tone(1200, 2.0))])  # type: ignore[arg-type]
    assert [t.speaker for t in named] == ["low", "high", "low"]
    assert diarize(silence(2.0), PitchEncoder()) == []  # type: ignore[arg-type]


def test_whisper_text_goes_to_the_turn_it_overlaps_most() -> None:
    turns = [SpeakerTurn(0.0, 2.0, "A"), SpeakerTurn(2.5, 5.0, "B")]
    transcript = Transcript(
        text="one two three four",
        language="en",
        duration_s=6.0,
        segments=(
            Segment(0, 0.0, 1.0, " one"),
            Segment(1, 1.5, 3.5, " two"),  # more of it in B's turn
            Segment(2, 5.5, 6.0, " three"),  # in no turn: the nearest
            Segment(3, 1.0, 1.5, " "),
        ),
    )
    segments = with_text(turns, transcript)
    assert [(s.id, s.speaker, s.text) for s in segments] == [
        ("seg_000", "A", "one"),
        ("seg_001", "B", "two three"),
    ]
