"""Server VAD on noisy speech, with and without noise suppression (TANTRA_AUDIO_NOISE_SUPPRESSION):
two eSpeak NG utterances with pauses around them, mixed here with white noise and with babble
(other eSpeak voices talking over each other) at known signal-to-noise ratios, appended to a
session's input audio buffer as a client would, in 100 ms pieces. Each 20 ms frame's state (in a
turn or not, from the speech_started/stopped events) is compared with where the speech really is.

The energy detector alone hears white noise 20 dB under the speech (-40 dBFS here) as one long turn;
gated first, it finds the utterances (frame accuracy 0.90 to 1.0 at 20, 10 and 5 dB SNR; docs/
realtime.md). Babble is speech itself, which stationary gating cannot tell from the talker: it is
no better, and must be no worse."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pytest
import soxr

from adapters.tts import SAMPLE_RATE
from gateway import Settings
from gateway.realtime.conversation import Conversation, Message
from gateway.realtime.events import EventError
from gateway.realtime.input_audio import InputAudio
from gateway.realtime.input_transcription import InputTranscriber
from gateway.realtime.vad import FRAME_MS, VadSettings
from tests.audio_samples import ESPEAK_RATE, espeak_wav, needs_espeak

pytestmark = needs_espeak

FRAME = SAMPLE_RATE * FRAME_MS // 1000
# The frame accuracy server VAD keeps on gated speech in white noise, by SNR (measured: 0.997 at
# 20 dB, 0.985 at 10 dB, the moderate one, and 0.896 at 5 dB; docs/realtime.md).
FLOORS = {20: 0.95, 10: 0.9, 5: 0.8}


def _speech(text: str, voice: str) -> np.ndarray:
    """eSpeak's speech of `text` at 24 kHz, float, its leading and trailing silence cut."""
    wav = espeak_wav(text, voice=voice)
    samples = np.frombuffer(wav[44 : len(wav) - len(wav) % 2], dtype="<i2").astype(np.float32) / 32768
    samples = soxr.resample(samples, ESPEAK_RATE, SAMPLE_RATE, quality="HQ")
    loud = np.nonzero(np.abs(samples) > 0.01)[0]
    return samples[loud[0] : loud[-1] + 1].astype(np.float32)


class _Scene:
    """Two utterances between pauses, where the speech is, and noises to mix with it."""

    def __init__(self) -> None:
        first = _speech("Could you tell me the weather for tomorrow morning?", "en-gb+m3")
        second = _speech("I would like a table for two at eight.", "en-us+f2")
        pauses = [np.zeros(int(s * SAMPLE_RATE), np.float32) for s in (0.8, 1.2, 0.8)]
        self.clean = np.concatenate([pauses[0], first, pauses[1], second, pauses[2]])
        truth = np.zeros(len(self.clean), bool)
        start = len(pauses[0])
        truth[start : start + len(first)] = True
        start += len(first) + len(pauses[1])
        truth[start : start + len(second)] = True
        frames = len(self.clean) // FRAME
        self.truth = truth[: frames * FRAME].reshape(frames, FRAME).mean(axis=1) > 0.5
        self.speech_power = float(np.mean(self.clean[truth] ** 2))
        talkers = [
            _speech("The museum opens at nine and closes late on Fridays.", "en-us+m1"),
            _speech("Please remember to bring the documents to the meeting.", "en-gb+f1"),
            _speech("Three hundred people were waiting outside the station.", "en-us+m7"),
        ]
        rng = np.random.default_rng(7)
        babble = np.zeros(len(self.clean), np.float32)
        for talker in talkers:
            looped = np.tile(talker, len(self.clean) // len(talker) + 2)
            offset = int(rng.integers(0, len(talker)))
            babble += looped[offset : offset + len(self.clean)]
        self.noises = {"white": rng.standard_normal(len(self.clean)).astype(np.float32), "babble": babble}

    def noisy(self, noise: str, snr_db: float) -> bytes:
        base = self.noises[noise]
        scale = np.sqrt(self.speech_power / 10 ** (snr_db / 10) / np.mean(base**2))
        mixed = np.clip(self.clean + scale * base, -1, 1)
        return (mixed * 32767).astype("<i2").tobytes()


class _Session:
    """What the input audio needs of its session: the events it emits, kept."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def error(self, problem: EventError, event_id: str | None) -> None:
        self.events.append({"type": "error", "code": problem.code})

    async def interrupt(self) -> None:
        pass

    async def answer_turn(self) -> None:
        pass


class _Transcriber:
    def start(self, item: Message, index: int, pcm: bytes) -> None:
        pass


@pytest.fixture(scope="module")
def scene() -> Iterator[_Scene]:
    yield _Scene()


async def _accuracy(
    scene: _Scene, pcm: bytes, suppression: float | None, requested: float | None = None
) -> float:
    """The share of 20 ms frames server VAD puts on the right side of speech; `suppression` is the
    operator's gate, `requested` the strength a session's `input_audio_noise_reduction` asks for."""
    session = _Session()
    audio = InputAudio(
        Conversation(512),
        cast(InputTranscriber, _Transcriber()),
        session,
        600.0,
        noise_suppression=suppression,
        requested_strength=requested,
    )
    vad = VadSettings(silence_duration_ms=300, create_response=False, interrupt_response=False)
    audio.detect(vad, reduce_noise=requested is not None)
    piece = SAMPLE_RATE // 10 * 2  # 100 ms
    for start in range(0, len(pcm), piece):
        await audio.append(base64.b64encode(pcm[start : start + piece]).decode())
    in_turn = np.zeros(len(scene.truth), bool)
    began: int | None = None
    for event in session.events:
        if event["type"] == "input_audio_buffer.speech_started":
            began = event["audio_start_ms"] // FRAME_MS
        elif event["type"] == "input_audio_buffer.speech_stopped" and began is not None:
            in_turn[began : event["audio_end_ms"] // FRAME_MS] = True
            began = None
    if began is not None:
        in_turn[began:] = True
    return float(np.mean(in_turn == scene.truth))


async def test_clean_speech_is_found_with_or_without_suppression(scene: _Scene) -> None:
    pcm = (scene.clean * 32767).astype("<i2").tobytes()
    assert await _accuracy(scene, pcm, None) > 0.95
    assert await _accuracy(scene, pcm, 1.0) > 0.95


@pytest.mark.parametrize(("noise", "snr_db"), [("white", 20), ("white", 10), ("white", 5), ("babble", 10)])
async def test_suppression_is_not_worse_on_noisy_speech(scene: _Scene, noise: str, snr_db: int) -> None:
    pcm = scene.noisy(noise, snr_db)
    plain, gated = await _accuracy(scene, pcm, None), await _accuracy(scene, pcm, 1.0)
    print(f"{noise} {snr_db} dB: frame accuracy {plain:.3f} plain, {gated:.3f} suppressed")
    assert gated >= plain - 0.02, (plain, gated)
    if noise == "white":
        assert plain < 0.7  # the detector alone takes the noise for speech
        assert gated >= FLOORS[snr_db], (plain, gated)


async def test_a_session_s_noise_reduction_gates_what_vad_hears(scene: _Scene) -> None:
    """The operator's gate off, the session's `input_audio_noise_reduction` on: the same gain."""
    pcm = scene.noisy("white", 10)
    assert await _accuracy(scene, pcm, None, requested=1.0) >= FLOORS[10]


def test_the_setting_reaches_vad_and_transcription() -> None:
    off = Settings()
    assert off.vad_noise_suppression() is None and off.transcription_noise_suppression() is None
    vad = Settings(audio_noise_suppression="vad", audio_noise_suppression_strength=0.8)
    assert vad.vad_noise_suppression() == 0.8 and vad.transcription_noise_suppression() is None
    both = Settings(audio_noise_suppression="all")
    assert both.vad_noise_suppression() == 1.0 and both.transcription_noise_suppression() == 1.0
    assert Settings(tts_loudness_lufs="off").speech_loudness_lufs() is None
    assert Settings().speech_loudness_lufs() == -16.0
