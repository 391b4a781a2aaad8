"""A speech-to-text model served by vLLM, beside whisper.cpp: vLLM 0.32 on the CPU serves a
random-weight Hugging Face Whisper (engine/whisper_hf.py: tiny shape, Whisper's real tokenizer
converted from openai-whisper's tiktoken file) at /v1/audio/transcriptions and /translations, and
the gateway sends it the transcriptions that name it, admitted and ledgered like other endpoints,
while `whisper-1` stays whisper.cpp's. The weights are random: the text is noise, capped short with
vLLM's `max_completion_tokens`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from engine.checkpoint import ensure_checkpoint
from engine.launcher import EngineConfig
from gateway import Settings, create_app
from gateway.store import Database
from gateway.store.models import UsageRecord
from tests.audio import speech_file
from tests.servers import ThreadedServer, free_port, logged_engine

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1500)]  # two engines start on a busy host

ROOT = Path(__file__).resolve().parents[3]
STT_MODEL = "whisper-vllm"
WAV = speech_file("wav", seconds=2.0)
SHORT = {"max_completion_tokens": 4}


@pytest.fixture(scope="module")
def whisper_engine_url() -> Iterator[str]:
    preset = "whisper-hf-tiny"
    checkpoint = ensure_checkpoint(ROOT / ".cache" / "checkpoints" / preset, preset=preset, seed=0)
    config = EngineConfig(
        model_dir=checkpoint,
        served_model_name=STT_MODEL,
        port=free_port(),
        max_model_len=None,  # Whisper's decoder: 448 positions, from the checkpoint
        tool_call_parser=None,
        scheduling_policy="fcfs",
    )
    with logged_engine(config, ROOT / ".cache" / "test-whisper-engine.log") as process:
        yield process.base_url


@pytest.fixture(scope="module")
def stt_gateway(
    engine_url: str, whisper_engine_url: str, model: str, gateway_settings: Callable[..., Settings]
) -> Iterator[str]:
    settings = gateway_settings(
        upstreams={"engine": {"url": engine_url}, "whisper": {"url": whisper_engine_url}},
        routing={"default_model": model},
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(stt_gateway: str, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stt_gateway + "/v1", api_key=api_key, max_retries=0, timeout=300) as sdk:
        yield sdk


def test_the_vllm_model_transcribes_and_is_ledgered(client: openai.OpenAI, database_url: str) -> None:
    assert {STT_MODEL, "whisper-1"} <= {card.id for card in client.models.list()}
    raw = client.audio.transcriptions.with_raw_response.create(
        model=STT_MODEL, file=("speech.wav", WAV), extra_body=SHORT
    )
    answer = raw.parse()
    assert isinstance(answer.text, str) and answer.text
    request_id = raw.headers["x-request-id"]

    async def ledger() -> list[tuple[str, str, float | None, int]]:
        database = Database(database_url)
        try:
            async with database.session() as session:
                rows = await session.execute(
                    select(
                        UsageRecord.model, UsageRecord.endpoint, UsageRecord.audio_seconds, UsageRecord.status
                    ).where(UsageRecord.request_id == request_id)
                )
                return [tuple(row) for row in rows]  # type: ignore[misc]
        finally:
            await database.close()

    deadline = time.monotonic() + 10
    while not (rows := asyncio.run(ledger())) and time.monotonic() < deadline:
        time.sleep(0.2)
    ((model, endpoint, seconds, status),) = rows
    assert (model, endpoint, status) == (STT_MODEL, "/v1/audio/transcriptions", 200)
    assert seconds == pytest.approx(2.0, abs=0.05)  # decoded by the gateway, as whisper.cpp's are


def test_formats_and_translation(client: openai.OpenAI) -> None:
    text = client.audio.transcriptions.create(
        model=STT_MODEL, file=("speech.wav", WAV), response_format="text", extra_body=SHORT
    )
    assert isinstance(text, str)
    verbose = client.audio.transcriptions.create(
        model=STT_MODEL, file=("speech.wav", WAV), response_format="verbose_json", extra_body=SHORT
    )
    assert verbose.duration == pytest.approx(2.0, abs=0.05)
    translated = client.audio.translations.create(model=STT_MODEL, file=("speech.wav", WAV), extra_body=SHORT)
    assert isinstance(translated.text, str)
    # whisper.cpp still answers its own name on the same gateway.
    assert client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", WAV)).usage is not None


def test_what_only_whisper_cpp_serves_is_a_400(stt_gateway: str, model: str, auth: dict[str, str]) -> None:
    def post(status: int, **data: str) -> dict[str, str]:
        response = httpx.post(
            stt_gateway + "/v1/audio/transcriptions",
            data={"model": STT_MODEL, **data},
            files={"file": ("a.wav", WAV)},
            headers=auth,
            timeout=120,
        )
        assert response.status_code == status, response.text
        error: dict[str, str] = response.json()["error"]
        return error

    assert post(400, stream="true")["param"] == "stream"
    assert post(400, **{"include[]": "emotion"})["param"] == "include"
    assert post(400, response_format="diarized_json")["param"] == "response_format"
    # A chat model: vLLM serves no transcription route for it.
    assert post(400, model=model)["code"] == "model_not_supported"
    assert post(404, model="nope")["code"] == "model_not_found"
