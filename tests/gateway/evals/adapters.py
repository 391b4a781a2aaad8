"""LoRA adapters for the qwen2-tiny base written directly (PEFT's layout: adapter_config.json and
adapter_model.safetensors on q_proj and v_proj), for the eval regression test's two versions."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

RANK = 8


def write_adapter(directory: Path, base: Path, *, scale: float, seed: int = 0) -> Path:
    """An adapter whose B matrices are `scale` times Gaussian noise: 0 leaves the base model's
    answers exactly as they are (its delta is zero), a large scale changes them."""
    config = json.loads((base / "config.json").read_text())
    hidden = int(config["hidden_size"])
    head_dim = hidden // int(config["num_attention_heads"])
    out = {"q_proj": hidden, "v_proj": head_dim * int(config["num_key_value_heads"])}
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(int(config["num_hidden_layers"])):
        for name, size in out.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, hidden, generator=generator)
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(size, RANK, generator=generator) * scale
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "adapter_model.safetensors"))
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": list(out),
        "base_model_name_or_path": str(base),
    }
    (directory / "adapter_config.json").write_text(json.dumps(adapter_config))
    return directory
