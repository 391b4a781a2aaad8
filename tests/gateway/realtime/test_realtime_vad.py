"""Server VAD's energy detector and its settings (no engine): the session test with real speech
is tests/gateway/realtime/test_realtime.py."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.realtime.events import EventError
from gateway.realtime.vad import SpeechDetector, Turn, VadSettings

RATE = 24_000


def tone(ms: int, dbfs: float = -20.0) -> bytes:
    t = np.arange(RATE * ms // 1000) / RATE
    return (np.sin(2 * np.pi * 220 * t) * 32767 * 10 ** (dbfs / 20)).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


def test_a_turn_starts_with_the_speech_and_stops_after_the_silence() -> None:
    detector = SpeechDetector(VadSettings(silence_duration_ms=400))
    audio = silence(500) + tone(1000) + silence(1000)
    turns = [
        turn for start in range(0, len(audio), 4801) for turn in detector.feed(audio[start : start + 4801])
    ]
    assert turns == [Turn("start", 500), Turn("stop", 1500)]
    assert not detector.speaking


def test_clicks_and_quiet_noise_are_not_turns() -> None:
    detector = SpeechDetector(VadSettings())
    assert detector.feed(silence(200) + tone(20) + silence(200) + tone(2000, dbfs=-55)) == []


def test_the_threshold_sets_how_loud_speech_must_be() -> None:
    quiet = silence(100) + tone(500, dbfs=-45) + silence(600)
    assert SpeechDetector(VadSettings(threshold=0.5)).feed(quiet) == []
    assert [turn.edge for turn in SpeechDetector(VadSettings(threshold=0.2)).feed(quiet)] == ["start", "stop"]


def test_settings_are_parsed_as_openai_names_them() -> None:
    settings = VadSettings.parse({"type": "server_vad", "threshold": 0.7, "silence_duration_ms": 300})
    assert settings.describe() == {
        "type": "server_vad",
        "threshold": 0.7,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 300,
        "create_response": True,
        "interrupt_response": True,
        "idle_timeout_ms": None,
    }
    assert VadSettings.parse({"threshold": None}) == VadSettings()


@pytest.mark.parametrize(
    ("given", "param"),
    [
        ({"type": "semantic_vad"}, "session.turn_detection.type"),
        ({"type": "server_vad", "threshold": 2}, "session.turn_detection.threshold"),
        ({"type": "server_vad", "silence_duration_ms": "long"}, "session.turn_detection.silence_duration_ms"),
        ({"type": "server_vad", "create_response": "yes"}, "session.turn_detection.create_response"),
    ],
)
def test_bad_settings_are_errors_naming_the_field(given: dict[str, object], param: str) -> None:
    with pytest.raises(EventError) as raised:
        VadSettings.parse(given)
    assert raised.value.param == param
