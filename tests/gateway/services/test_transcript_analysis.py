"""`include[]=emotion` and `include[]=audio_events` on /v1/audio/transcriptions and in realtime
transcription events, end to end: the real `openai` SDK and gateway, whisper.cpp's random tiny model,
and random-weight audio-classification checkpoints built locally (a wav2vec2 for emotions, an AST
for sound events) in the worker processes. Random weights: the labels are checked to be the
checkpoint's and the scores to sum to 1, not what they say."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from adapters.stt import analysis_installed
from gateway import Settings, create_app
from tests.audio import speech_file
from tests.gateway.realtime.test_realtime import connect
from tests.servers import ThreadedServer

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not analysis_installed(), reason="torch and transformers are not installed"),
]

WAV = speech_file("wav", seconds=2.0)


@pytest.fixture(scope="module")
def analysis_gateway(
    engine_url: str,
    gateway_settings: Callable[..., Settings],
    emotion_checkpoint: Path,
    events_checkpoint: Path,
) -> Iterator[str]:
    settings = gateway_settings(
        engine_url=engine_url,
        audio_emotion_model=emotion_checkpoint,
        audio_events_model=events_checkpoint,
        audio_analysis_top_k=10,
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(analysis_gateway: str, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=analysis_gateway + "/v1", api_key=api_key, max_retries=0, timeout=300) as sdk:
        yield sdk


def labels_of(checkpoint: Path) -> set[str]:
    return set(json.loads((checkpoint / "config.json").read_text())["id2label"].values())


def check(labels: list[dict[str, Any]], checkpoint: Path) -> None:
    assert {label["label"] for label in labels} == labels_of(checkpoint)
    total = sum(float(label["score"]) for label in labels)
    assert total == pytest.approx(1.0, abs=1e-4)


def test_json_carries_both_analyses(
    client: openai.OpenAI, emotion_checkpoint: Path, events_checkpoint: Path
) -> None:
    answer = client.audio.transcriptions.create(
        model="whisper-1",
        file=("speech.wav", WAV),
        include=["emotion", "audio_events"],  # type: ignore[list-item]
    )
    body = answer.model_dump()
    check(body["emotion"], emotion_checkpoint)
    check(body["audio_events"], events_checkpoint)


def test_verbose_json_labels_every_segment(client: openai.OpenAI, emotion_checkpoint: Path) -> None:
    answer = client.audio.transcriptions.create(  # type: ignore[call-overload]
        model="whisper-1",
        file=("speech.wav", WAV),
        response_format="verbose_json",
        include=["emotion"],
    )
    body = answer.model_dump()
    check(body["emotion"], emotion_checkpoint)
    assert "audio_events" not in body
    assert body["segments"], body
    for segment in body["segments"]:
        check(segment["emotion"], emotion_checkpoint)


def test_bad_includes_are_400s(analysis_gateway: str, gateway_url: str, auth: dict[str, str]) -> None:
    def post(url: str, **data: object) -> dict[str, object]:
        response = httpx.post(
            url + "/v1/audio/transcriptions",
            data={"model": "whisper-1", **data},
            files={"file": ("a.wav", WAV)},
            headers=auth,
            timeout=120,
        )
        assert response.status_code == 400, response.text
        error: dict[str, object] = response.json()["error"]
        return error

    error = post(gateway_url, **{"include[]": "emotion"})  # the session's gateway has no checkpoint
    assert error["code"] == "analysis_unavailable" and error["param"] == "include"
    assert "TANTRA_AUDIO_EMOTION_MODEL" in str(error["message"])
    error = post(gateway_url, **{"include[]": "audio_events"})
    assert "TANTRA_AUDIO_EVENTS_MODEL" in str(error["message"])
    assert post(analysis_gateway, **{"include[]": "emotion", "response_format": "srt"})["param"] == "include"
    assert post(analysis_gateway, **{"include[]": "emotion", "stream": "true"})["param"] == "include"
    assert post(analysis_gateway, **{"include[]": "logprobs"})["param"] == "include"


async def test_realtime_transcription_completed_carries_the_labels(
    analysis_gateway: str, model: str, api_key: str, emotion_checkpoint: Path, events_checkpoint: Path
) -> None:
    async for session in connect(analysis_gateway, model, api_key):
        transcription = {"model": "whisper-1", "include": ["emotion", "audio_events"]}
        await session.send(
            {
                "type": "transcription_session.update",
                "session": {"input_audio_transcription": transcription, "turn_detection": None},
            }
        )
        await session.until("transcription_session.updated")
        await session.send(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48_000)).decode()}
        )
        await session.send({"type": "input_audio_buffer.commit"})
        completed = await session.until("conversation.item.input_audio_transcription.completed")
        check(completed["emotion"], emotion_checkpoint)
        check(completed["audio_events"], events_checkpoint)
