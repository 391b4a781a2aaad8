"""The trainable torch model (`engine.spikingbrain.torch_model`, what PEFT wraps) is the reference's
math: the same float32 logits at every position of prompts across the 32-token window, in both
published gate layouts, with right padding changing nothing before it; PEFT's LoRA takes the names
vLLM's loader expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.spikingbrain.reference import GLAswaReference
from engine.spikingbrain.torch_model import GLAswaTorchForCausalLM, lora_target_modules


@pytest.mark.parametrize("layout", ["low_rank", "full"])
def test_logits_equal_the_reference(
    layout: str, gla_swa_checkpoint: Path, w8aspike_checkpoint: Path, prompts: list[list[int]]
) -> None:
    checkpoint = gla_swa_checkpoint if layout == "low_rank" else w8aspike_checkpoint
    model = GLAswaTorchForCausalLM.from_checkpoint(checkpoint)
    assert model.gate_layout == layout
    reference = GLAswaReference.from_pretrained(checkpoint)
    with torch.no_grad():
        for prompt in prompts[:6]:  # up to 97 tokens: past the window, more than one GLA chunk
            got = model(input_ids=torch.tensor([prompt])).logits[0]
            assert torch.allclose(got, reference.prefill_logits(prompt), atol=1e-4, rtol=0)


def test_right_padding_leaves_the_real_tokens_alone(
    gla_swa_checkpoint: Path, prompts: list[list[int]]
) -> None:
    model = GLAswaTorchForCausalLM.from_checkpoint(gla_swa_checkpoint)
    short, long = prompts[1], prompts[4]
    batch = torch.tensor([short + [0] * (len(long) - len(short)), long])
    with torch.no_grad():
        logits = model(input_ids=batch).logits
        alone = model(input_ids=torch.tensor([short])).logits[0]
    assert torch.allclose(logits[0, : len(short)], alone, atol=1e-5, rtol=0)


def test_peft_adapts_the_projections_by_the_checkpoint_names(gla_swa_checkpoint: Path) -> None:
    from peft import LoraConfig, get_peft_model

    model = GLAswaTorchForCausalLM.from_checkpoint(gla_swa_checkpoint)
    config = LoraConfig(r=4, target_modules=list(lora_target_modules("low_rank")), task_type="CAUSAL_LM")
    peft: Any = get_peft_model(model, config)
    adapted = {name.removesuffix(".lora_A") for name, _ in peft.named_modules() if name.endswith(".lora_A")}
    assert "base_model.model.model.layers.0.attn.gk_proj.0" in adapted
    assert "base_model.model.model.layers.1.attn.q_proj" in adapted
    assert all("embeddings" not in name and "lm_head" not in name for name in adapted)
    assert lora_target_modules("full")[-1] == "gk_proj"


def test_logits_to_keep_is_the_full_heads_slice(gla_swa_checkpoint: Path, prompts: list[list[int]]) -> None:
    """transformers' `logits_to_keep` (the last n positions, or indices), which training's loss
    uses to apply the 151k-wide head at the answer's positions only."""
    model = GLAswaTorchForCausalLM.from_checkpoint(gla_swa_checkpoint)
    ids = torch.tensor([prompts[4]])
    kept = torch.tensor([0, 5, len(prompts[4]) - 2])
    with torch.no_grad():
        full = model(input_ids=ids).logits[0]
        assert torch.allclose(model(input_ids=ids, logits_to_keep=3).logits[0], full[-3:], atol=1e-5, rtol=0)
        assert torch.allclose(
            model(input_ids=ids, logits_to_keep=kept).logits[0], full[kept], atol=1e-5, rtol=0
        )
