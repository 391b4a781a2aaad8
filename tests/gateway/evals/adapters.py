"""LoRA adapters for the LoRA engine's base written directly (PEFT's layout: adapter_config.json and
adapter_model.safetensors on q_proj and v_proj), for the eval regression test's two versions. The
projections' names and shapes are read off the base as the trainer loads it
(`engine.finetune.train.load_base`), so any base the trainer takes will do: today SpikingBrain's
`gla_swa` `tiny`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.finetune.train import load_base

RANK = 8
TARGETS = ("q_proj", "v_proj")


def write_adapter(directory: Path, base: Path, *, scale: float, seed: int = 0) -> Path:
    """An adapter whose B matrices are `scale` times Gaussian noise: 0 leaves the base model's
    answers exactly as they are (its delta is zero), a large scale changes them."""
    model, _ = load_base(base)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS and isinstance(module, torch.nn.Linear):
            prefix = f"base_model.model.{name}"
            b = torch.randn(module.out_features, RANK, generator=generator) * scale
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, module.in_features, generator=generator)
            tensors[f"{prefix}.lora_B.weight"] = b
    assert tensors, f"no {TARGETS} in {base}"
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": list(TARGETS),
        "base_model_name_or_path": str(base),
    }
    (directory / "adapter_config.json").write_text(json.dumps(adapter_config))
    return directory
