"""The published W8ASpike model in plain PyTorch: the oracle for the plugin's spike-coded serving.

`GLAswaReference` with the published W8ASpike modules swapped in
(BICLab/SpikingBrain-7B `W8ASpike/`, read in docs/spikingbrain.md):

- each `QuantLinear` (every attention projection including the full-rank
  gate, and the MLP's `gate_proj`/`up_proj`) computes on its weight's int8
  group grid (applied at load by `GLAswaReference`) and on its spike-coded
  input: `round(x / t) * t`, `t = mean|x| / 3` over the input vector;
- `down_proj` runs inside the fused SwiGLU-linear on its raw weight and raw input;
- a window layer spike-codes its query per head after RoPE, and rounds its keys
  and values to int8 per token and head (absmax / 127) before they are cached.

The coding is written out here independently of `w8aspike.py` (the serving
side), so the two check each other.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.reference import GLAswaReference
from engine.spikingbrain.weights import quantized_weight_names

__all__ = ["W8ASpikeReference"]

_RAW_INPUTS = ("mlp.down_proj",)


def _spike_count_times_threshold(x: torch.Tensor) -> torch.Tensor:
    threshold = torch.clamp(x.abs().mean(dim=-1, keepdim=True) / 3.0, min=1e-5, max=1e4)
    return torch.round(x / threshold) * threshold


def _int8_symmetric(x: torch.Tensor) -> torch.Tensor:
    scale = torch.clamp(x.abs().amax(dim=-1, keepdim=True) / 127.0, min=1e-5, max=1e4)
    return torch.clamp(torch.round(x / scale), -128, 127) * scale


class W8ASpikeReference(GLAswaReference):
    """Greedy generation and logits as the published W8ASpike modules compute them."""

    def __init__(
        self, config: GLAswaConfig, weights: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
    ) -> None:
        if not quantized_weight_names(weights):
            raise ValueError("not a W8ASpike checkpoint: no weight_quantizer.scales")
        super().__init__(config, weights, dtype)

    def _linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if not name.endswith(_RAW_INPUTS):
            x = _spike_count_times_threshold(x)
        return super()._linear(name, x)

    def _code_window_qkv(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # q, k, v are [heads, head_dim]: the coding runs per head.
        return _spike_count_times_threshold(q), _int8_symmetric(k), _int8_symmetric(v)
