"""vLLM serving a W8ASpike checkpoint as published (its default): spike-coded projection inputs,
the window layers' spike-coded queries and int8 keys/values, against `W8ASpikeReference`; and the
same checkpoint converted to real int8 W8A8 kernels, whose top-1 agreement with that reference is
measured and held where the reference's margin is clear.

Two engines: the spiking one (float32, eager, prefix caching on, all prompts in one batch,
resubmitted once) and the converted W8A8 one (bf16, eager: the int8 kernels' activation dtype),
which scores the reference's own continuations teacher-forced with prompt logprobs in one batch.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.quantization import ensure_quantized
from tests.spikingbrain.conftest import NEW_TOKENS, ROOT, VllmRunner

pytestmark = pytest.mark.timeout(1800)

LOGIT_TOL = 1e-3
CLEAR_MARGIN = 0.1
"""Where the reference's top-1 logit leads its runner-up by this much, its choice is not a near-tie."""
CONVERSION_FLOORS = {"all": 0.4, "clear": 0.85}
"""Observed (vLLM 0.32, AVX2 host, 2026-12-07, as first measured): 268/512 = 52% of all positions,
35/38 = 92% where the reference's margin exceeds 0.1 (the random tiny model's logits are nearly
flat, so most positions are near-ties that the spike coding alone moves). The floors leave room for
a few flips, no more."""


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


@pytest.fixture(scope="module")
def converted_checkpoint(w8aspike_checkpoint: Path) -> Path:
    """The W8ASpike checkpoint through `python -m engine quantize --scheme w8a8`."""
    return ensure_quantized(
        w8aspike_checkpoint, ROOT / ".cache" / "checkpoints" / "gla_swa_w8aspike-tiny-w8a8", "w8a8"
    )


@pytest.fixture(scope="module")
def converted_run_started(
    run_vllm: VllmRunner,
    converted_checkpoint: Path,
    prompts: list[list[int]],
    spiking_greedy: list[list[int]],
) -> Future[dict[str, Any]]:
    """Each prompt followed by the reference's 64 tokens, scored in one batch (no page reuse)."""
    return run_vllm.start(
        "w8aspike-w8a8-bf16",
        "--dtype",
        "bfloat16",
        "--enforce-eager",
        "--prompt-logprobs",
        "1",
        model=converted_checkpoint,
        token_prompts=[p + g for p, g in zip(prompts, spiking_greedy, strict=True)],
        new_tokens=1,
    )


def test_w8a8_conversion_agrees_with_the_reference_where_its_margin_is_clear(
    converted_run_started: Future[dict[str, Any]],
    spiking_reference: Any,
    prompts: list[list[int]],
    spiking_greedy: list[list[int]],
) -> None:
    """Teacher-forced over the 8 x 64 continuation positions: the converted engine's top-1 (from
    raw prompt logits) against the reference's greedy token, bucketed by the reference's margin."""
    agree, clear, agree_clear = 0, 0, 0
    for prompt, greedy, result in zip(
        prompts, spiking_greedy, converted_run_started.result()["results"], strict=True
    ):
        logits = spiking_reference.prefill_logits(prompt + greedy[:-1])[len(prompt) - 1 :]
        top2 = logits.topk(2, dim=-1).values
        margins = (top2[:, 0] - top2[:, 1]).tolist()
        entries = result["prompt_logits"][len(prompt) :]
        assert len(entries) == len(greedy) == len(margins)
        for token, entry, margin in zip(greedy, entries, margins, strict=True):
            chosen = int(max(entry, key=entry.__getitem__))
            agree += chosen == token
            clear += margin > CLEAR_MARGIN
            agree_clear += chosen == token and margin > CLEAR_MARGIN
    total = len(spiking_greedy) * NEW_TOKENS
    print(
        f"W8A8 conversion vs W8ASpikeReference: {agree}/{total} of all positions,"
        f" {agree_clear}/{clear} where the reference's margin > {CLEAR_MARGIN}"
    )
    assert clear >= 20, "too few clear-margin positions to judge"
    assert agree / total >= CONVERSION_FLOORS["all"]
    assert agree_clear / clear >= CONVERSION_FLOORS["clear"]
