"""vLLM serving a W8ASpike checkpoint as published (its default): spike-coded projection inputs,
the window layers' spike-coded queries and int8 keys/values, against `W8ASpikeReference`.

One engine (float32, eager, prefix caching on), all prompts in one batch, resubmitted once.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.spikingbrain.conftest import NEW_TOKENS, VllmRunner

pytestmark = pytest.mark.timeout(1800)

LOGIT_TOL = 1e-3


@pytest.fixture(scope="module")
def spiking_run_started(run_vllm: VllmRunner, w8aspike_checkpoint: Path) -> Future[dict[str, Any]]:
    return run_vllm.start(
        "w8aspike-spiking-fp32",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--repeat",
        model=w8aspike_checkpoint,
    )


@pytest.fixture(scope="module")
def spiking_run(spiking_run_started: Future[dict[str, Any]]) -> dict[str, Any]:
    return spiking_run_started.result()


@pytest.fixture(scope="module")
def spiking_reference(w8aspike_checkpoint: Path) -> Any:
    from engine.spikingbrain.w8aspike_reference import W8ASpikeReference

    return W8ASpikeReference.from_pretrained(w8aspike_checkpoint)


@pytest.fixture(scope="module")
def spiking_greedy(spiking_reference: Any, prompts: list[list[int]]) -> list[list[int]]:
    return [spiking_reference.generate_greedy(p, NEW_TOKENS) for p in prompts]


def test_greedy_equals_the_w8aspike_reference(
    spiking_run: dict[str, Any], spiking_greedy: list[list[int]]
) -> None:
    """Every prompt (1 to 230 tokens, the window is 32), 64 greedy tokens each."""
    assert [r["token_ids"] for r in spiking_run["results"]] == spiking_greedy


def test_prefix_cached_resubmission_decodes_the_same(
    spiking_run: dict[str, Any], spiking_greedy: list[list[int]]
) -> None:
    """From cached int8-rounded keys/values and GLA states, the same tokens again."""
    assert spiking_run["repeat_token_ids"] == spiking_greedy
    assert max(spiking_run["repeat_cached_tokens"]) > 0


def test_sampled_logits_follow_the_reference(
    spiking_run: dict[str, Any], spiking_reference: Any, prompts: list[list[int]]
) -> None:
    result, prompt = spiking_run["results"][-1], prompts[-1]
    logits = spiking_reference.prefill_logits(prompt + result["token_ids"][:-1])[len(prompt) - 1 :]
    want = logits.gather(1, torch.tensor(result["token_ids"])[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(result["sampled_logits"]), want, rtol=0, atol=LOGIT_TOL)
