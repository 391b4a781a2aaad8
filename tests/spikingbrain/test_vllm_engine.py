"""vLLM's V1 engine serving a tiny random `gla_swa` checkpoint through the plugin, against the reference.

Each fixture below is one vLLM run (offline `LLM`, all prompts submitted as
one batch, prompts up to 7x the 32-token window). The fp32 run is compiled (torch.compile, as
`engine serve --no-fast-start` serves); the others run eager, as the served engines do by default
(and each starts in half the time). In float32 vLLM must agree
with the reference exactly: every greedy token, and prompt logits to float
rounding. In bfloat16 it must agree within bf16 tolerance, and greedy
decoding may only part from the reference where the reference itself
nearly ties.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.spikingbrain.conftest import NEW_TOKENS, ReferenceAnswers, VllmRunner

# A test's setup waits for its vLLM run, which shares the machine with the module's other runs.
pytestmark = pytest.mark.timeout(1800)

FP32_LOGIT_TOL = 1e-4
BF16_LOGIT_TOL = 0.02
"""Observed at most 6.3e-3 on the tiny checkpoint, whose logits have std ~0.25."""


@pytest.fixture(scope="module")
def fp32_run_started(run_vllm: VllmRunner) -> Future[dict[str, Any]]:
    """Default scheduling (chunked prefill with a large budget, prefix caching on), compiled."""
    return run_vllm.start("fp32", "--dtype", "float32", "--prompt-logprobs", "5", "--repeat")


@pytest.fixture(scope="module")
def fp32_chunked_run_started(run_vllm: VllmRunner) -> Future[dict[str, Any]]:
    """A 64-token step budget: long prompts are split over steps and share them with decodes."""
    return run_vllm.start(
        "fp32-chunked", "--dtype", "float32", "--max-num-batched-tokens", "64", "--repeat", "--enforce-eager"
    )


@pytest.fixture(scope="module")
def w8aspike_fp32_run_started(run_vllm: VllmRunner, w8aspike_checkpoint: Path) -> Future[dict[str, Any]]:
    return run_vllm.start(
        "w8aspike-weights-fp32",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--hf-overrides",
        '{"w8aspike_activations": "none"}',
        model=w8aspike_checkpoint,
    )


@pytest.fixture(scope="module")
def bf16_run_started(run_vllm: VllmRunner) -> Future[dict[str, Any]]:
    return run_vllm.start("bf16", "--dtype", "bfloat16", "--prompt-logprobs", "5", "--enforce-eager")


@pytest.fixture(scope="module")
def fp32_run(fp32_run_started: Future[dict[str, Any]]) -> dict[str, Any]:
    return fp32_run_started.result()


@pytest.fixture(scope="module")
def fp32_chunked_run(fp32_chunked_run_started: Future[dict[str, Any]]) -> dict[str, Any]:
    return fp32_chunked_run_started.result()


@pytest.fixture(scope="module")
def w8aspike_fp32_run(w8aspike_fp32_run_started: Future[dict[str, Any]]) -> dict[str, Any]:
    return w8aspike_fp32_run_started.result()


@pytest.fixture(scope="module")
def bf16_run(bf16_run_started: Future[dict[str, Any]]) -> dict[str, Any]:
    return bf16_run_started.result()


def _prompt_logit_diffs(report: dict[str, Any], answers: ReferenceAnswers) -> list[float]:
    """Largest |vLLM - reference| logit per prompt, over the prompt tokens and vLLM's top 5."""
    diffs = []
    for result, ref in zip(report["results"], answers.prompt_logits, strict=True):
        worst = 0.0
        # vLLM's entry i scores token i given tokens < i: the reference's row i - 1.
        for i, entry in enumerate(result["prompt_logits"][1:], start=1):
            for token, value in entry.items():
                worst = max(worst, abs(float(ref[i - 1, int(token)]) - value))
        diffs.append(worst)
    return diffs


def test_fp32_greedy_matches_reference(fp32_run: dict[str, Any], reference_answers: ReferenceAnswers) -> None:
    got = [r["token_ids"] for r in fp32_run["results"]]
    assert got == reference_answers.greedy


def test_fp32_prompt_logits_match_reference(
    fp32_run: dict[str, Any], reference_answers: ReferenceAnswers
) -> None:
    assert max(_prompt_logit_diffs(fp32_run, reference_answers)) < FP32_LOGIT_TOL


def test_fp32_prefix_cache_hits_resume_the_right_state(
    fp32_run: dict[str, Any], reference_answers: ReferenceAnswers
) -> None:
    """Resubmitted long prompts start from a cached GLA state and still decode the same."""
    assert max(fp32_run["repeat_cached_tokens"]) > 0
    assert fp32_run["repeat_token_ids"] == reference_answers.greedy


def test_fp32_chunked_prefill_matches_reference(
    fp32_chunked_run: dict[str, Any], reference_answers: ReferenceAnswers
) -> None:
    assert [r["token_ids"] for r in fp32_chunked_run["results"]] == reference_answers.greedy
    assert fp32_chunked_run["repeat_token_ids"] == reference_answers.greedy


def test_bf16_prompt_logits_within_tolerance(
    bf16_run: dict[str, Any], reference_answers: ReferenceAnswers
) -> None:
    assert max(_prompt_logit_diffs(bf16_run, reference_answers)) < BF16_LOGIT_TOL


def test_bf16_top1_agrees_wherever_reference_is_decisive(
    bf16_run: dict[str, Any], reference_answers: ReferenceAnswers
) -> None:
    for result, ref in zip(bf16_run["results"], reference_answers.prompt_logits, strict=True):
        for i, entry in enumerate(result["prompt_logits"][1:], start=1):
            top2 = ref[i - 1].topk(2).values
            if float(top2[0] - top2[1]) > 2 * BF16_LOGIT_TOL:
                vllm_top = max(entry, key=entry.get)
                assert int(vllm_top) == int(ref[i - 1].argmax()), f"position {i}"


def test_bf16_greedy_parts_from_reference_only_at_near_ties(
    bf16_run: dict[str, Any], reference: Any, prompts: list[list[int]], reference_answers: ReferenceAnswers
) -> None:
    for prompt, result, want in zip(prompts, bf16_run["results"], reference_answers.greedy, strict=True):
        got = result["token_ids"]
        split = next((j for j, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), None)
        if split is None:
            continue
        logits = reference.prefill_logits(prompt + want[:split])[-1]
        margin = float(logits[want[split]] - logits[got[split]])
        assert 0 <= margin < 2 * BF16_LOGIT_TOL, f"diverged at token {split} with reference margin {margin}"


def test_reference_logits_follow_vllm_sampled_logits(
    fp32_run: dict[str, Any], reference: Any, prompts: list[list[int]]
) -> None:
    """The raw logit vLLM reports for each generated token matches the reference's (float32)."""
    result, prompt = fp32_run["results"][-1], prompts[-1]
    logits = reference.prefill_logits(prompt + result["token_ids"][:-1])[len(prompt) - 1 :]
    want = logits.gather(1, torch.tensor(result["token_ids"])[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(result["sampled_logits"]), want, rtol=0, atol=FP32_LOGIT_TOL)


def test_w8aspike_layout_greedy_matches_reference(
    w8aspike_fp32_run: dict[str, Any], w8aspike_checkpoint: Path, prompts: list[list[int]]
) -> None:
    """W8ASpike's full-rank gate and weight grid (down_proj raw), its activation coding turned off
    (`w8aspike_activations: none`), load and run as the reference reads them."""
    from engine.spikingbrain.reference import GLAswaReference

    reference = GLAswaReference.from_pretrained(w8aspike_checkpoint)
    assert reference.gate_layout == "full"
    want = [reference.generate_greedy(p, NEW_TOKENS) for p in prompts]
    assert [r["token_ids"] for r in w8aspike_fp32_run["results"]] == want
