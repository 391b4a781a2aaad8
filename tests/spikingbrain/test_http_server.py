"""vLLM's OpenAI server finds the plugin through its entry point and serves `gla_swa`.

Started the way Tantra's launcher starts every engine (its own process, the
`vllm.general_plugins` entry point, eager mode), in float32 so concurrent
greedy completions must equal the reference token for token.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.launcher import EngineConfig
from tests.servers import free_port, logged_engine
from tests.spikingbrain.conftest import NEW_TOKENS, ROOT, ReferenceAnswers

MODEL_NAME = "spikingbrain-tiny"


@pytest.fixture(scope="module")
def server(gla_swa_checkpoint: Path) -> Any:
    if os.environ.get("TANTRA_SKIP_VLLM"):
        pytest.skip("TANTRA_SKIP_VLLM is set")
    pytest.importorskip("vllm")
    config = EngineConfig(
        model_dir=gla_swa_checkpoint,
        served_model_name=MODEL_NAME,
        port=free_port(),
        dtype="float32",
        tool_call_parser=None,
    )
    with logged_engine(config, ROOT / ".cache" / "spikingbrain-vllm-http.log") as process:
        yield process


def test_concurrent_completions_match_reference(
    server: Any, prompts: list[list[int]], reference_answers: ReferenceAnswers
) -> None:
    def complete(prompt: list[int]) -> list[int]:
        body = {
            "model": MODEL_NAME,
            "prompt": prompt,
            "max_tokens": NEW_TOKENS,
            "temperature": 0.0,
            "ignore_eos": True,
            "return_token_ids": True,
        }
        response = httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=600)
        response.raise_for_status()
        token_ids: list[int] = response.json()["choices"][0]["token_ids"]
        return token_ids

    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        got = list(pool.map(complete, prompts))
    assert got == reference_answers.greedy


def test_chat_completion_answers(server: Any) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 8,
        "ignore_eos": True,
    }
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] and response.json()["usage"]["completion_tokens"] == 8
