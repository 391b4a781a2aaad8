"""vLLM's OpenAI server finds the plugin through its entry point and serves `gla_swa`.

The server is the session's `lora_engine` (tests/conftest.py): started the way Tantra's launcher
starts every engine (its own process, the `vllm.general_plugins` entry point, eager mode), on the
`tiny` checkpoint (the same bytes as `gla_swa_checkpoint`) in float32, so concurrent greedy
completions must equal the reference token for token. It has LoRA enabled; these requests name no
adapter, so they run the base weights (the offline runs of test_vllm_engine.py check float32 without
LoRA). Sharing it saves an engine start of its own.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from engine.launcher import EngineProcess
from tests.conftest import LORA_MODEL
from tests.spikingbrain.conftest import NEW_TOKENS, ReferenceAnswers

MODEL_NAME = LORA_MODEL


# Skipped before any fixture starts; the engine is named as a parameter, not fetched by name, so the
# suite's grouping sees this module share the session's LoRA engine (tests/parallel.py): fetched by
# name, its group ended without it and stopped the engine before these tests ran.
pytestmark = pytest.mark.skipif(bool(os.environ.get("TANTRA_SKIP_VLLM")), reason="TANTRA_SKIP_VLLM is set")


@pytest.fixture(scope="module")
def server(lora_engine: EngineProcess) -> EngineProcess:
    return lora_engine


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
