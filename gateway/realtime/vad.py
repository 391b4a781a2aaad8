"""Server-side turn detection for /v1/realtime (`turn_detection: {"type": "server_vad"}`).

OpenAI's server VAD is a neural model; this one is an energy detector over 20 ms frames, which
needs nothing beyond numpy and is enough for a microphone in a quiet room. `threshold` keeps
OpenAI's 0..1 meaning of "how loud before it counts as speech": it maps to a frame level from
-60 dBFS (0) to -20 dBFS (1), -40 dBFS at the default 0.5. A turn starts at the first of three
voiced frames in a row (so a click is not a turn) and stops after `silence_duration_ms` without
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from adapters.tts import SAMPLE_RATE
from gateway.realtime.events import EventError

FRAME_MS = 20
_FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2
_ONSET_FRAMES = 3


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    # GA: this long without speech (of audio appended) commits the silence and asks for an
    # answer, after `input_audio_buffer.timeout_triggered`; None: never.
    idle_timeout_ms: int | None = None

    @classmethod
    def parse(cls, given: dict[str, Any]) -> VadSettings:
        """`session.turn_detection` as sent; an unknown type or a bad value is an `error` event."""
        param = "session.turn_detection"
        if given.get("type", "server_vad") != "server_vad":
            raise EventError(
                "Only `server_vad` turn detection is supported (or null to commit yourself).",
                code="unsupported_turn_detection",
                param=f"{param}.type",
            )
        values: dict[str, Any] = {}
        for name, kind, low, high in (
            ("threshold", float, 0.0, 1.0),
            ("prefix_padding_ms", int, 0, 5000),
            ("silence_duration_ms", int, FRAME_MS, 10_000),
            ("idle_timeout_ms", int, 5000, 30_000),  # OpenAI's bounds
        ):
            if given.get(name) is None:
                continue
            value = given[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise EventError(
                    f"`{name}` must be a number from {low:g} to {high:g}.",
                    code="invalid_value",
                    param=f"{param}.{name}",
                )
            values[name] = kind(value)
        for name in ("create_response", "interrupt_response"):
            if given.get(name) is not None:
                if not isinstance(given[name], bool):
                    raise EventError(
                        f"`{name}` must be true or false.", code="invalid_value", param=f"{param}.{name}"
                    )
                values[name] = given[name]
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "server_vad",
            "threshold": self.threshold,
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
            "idle_timeout_ms": self.idle_timeout_ms,
        }


@dataclass(frozen=True)
class Turn:
    """A detected edge: `start` (at `ms`, speech began) or `stop` (at `ms`, speech ended)."""

    edge: Literal["start", "stop"]
    ms: int


class SpeechDetector:
    """Feeds pcm16 (24 kHz mono) as it arrives; reports turn edges in ms since the first byte."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._level = 32768.0 * 10 ** ((-60.0 + 40.0 * settings.threshold) / 20.0)
        self._pending = b""
        self._frames = 0  # frames seen so far
        self._voiced_run = 0
        self._silent_run = 0
        self.speaking = False

    def feed(self, pcm: bytes) -> list[Turn]:
        data = self._pending + pcm
        whole = len(data) - len(data) % _FRAME_BYTES
        self._pending = data[whole:]
        if not whole:
            return []
        frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32).reshape(-1, _FRAME_BYTES // 2)
        levels = np.sqrt(np.mean(frames * frames, axis=1))
        turns: list[Turn] = []
        silence_frames = max(1, self.settings.silence_duration_ms // FRAME_MS)
        for level in levels:
            self._frames += 1
            voiced = bool(level >= self._level)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            self._silent_run = 0 if voiced else self._silent_run + 1
            if not self.speaking and self._voiced_run >= _ONSET_FRAMES:
                self.speaking = True
                turns.append(Turn("start", (self._frames - _ONSET_FRAMES) * FRAME_MS))
            elif self.speaking and self._silent_run >= silence_frames:
                self.speaking = False
                turns.append(Turn("stop", (self._frames - self._silent_run) * FRAME_MS))
        return turns
