"""Issue 16, point 16: audio is decoded by FFmpeg (PyAV) in worker processes, never in the gateway's
own: a decoder that crashes on a hostile file then takes a worker with it, not the gateway.

The gateway runs here in the test's process, so every `av.open` it makes is seen by a spy; the
workers are separate processes and are not spied on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av
import pytest
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.audio import speech_file


def test_transcription_decodes_outside_the_gateway_process(
    gateway_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = speech_file("wav", seconds=1.0)  # made with PyAV before the spy is set
    opened: list[Any] = []
    real_open = av.open

    def spy(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[:1])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", spy)
    settings = gateway_settings(auth_enabled=False)
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1"},
            files={"file": ("speech.wav", upload, "audio/wav")},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["seconds"] == pytest.approx(1.0, abs=0.05)
    assert opened == [], "the gateway process decoded the upload itself"
