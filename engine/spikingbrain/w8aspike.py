"""W8ASpike's activation coding, as the published modules compute it, for serving.

The published W8ASpike model (BICLab/SpikingBrain-7B, `W8ASpike/`) codes
activations in three places (docs/spikingbrain.md, "W8ASpike as published"):

- every `QuantLinear` input is spike-coded per token: a threshold
  `mean|x| / 3` over the input features, the integer spike count
  `round(x / threshold)`, and the layer computes on `count * threshold`;
- a window layer's query, after RoPE, is spike-coded the same way per head;
- a window layer's keys and values, after RoPE, are rounded to int8 per token
  and head (`absmax / 127`, clamped to [-128, 127]).

Which checkpoints get this: one carrying `weight_quantizer.scales` (the
W8ASpike layout), unless its config (or `--hf-overrides`) sets
`w8aspike_activations` to `"none"`, which leaves activations in the serving
dtype and keeps only the weight grid.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch

__all__ = [
    "ACTIVATION_MODES",
    "CONFIG_KEY",
    "SPIKE_THRESHOLD_DIVISOR",
    "int8_round_trip",
    "per_head",
    "spike_code",
    "spike_coded",
]

CONFIG_KEY = "w8aspike_activations"
ACTIVATION_MODES = ("spike", "none")
SPIKE_THRESHOLD_DIVISOR = 3.0
"""`QuantLinear(dynamic_sfr=3.0)` and the window layers' `dynamic_spikes(q, 3.0)`."""
_THRESHOLD_RANGE = (1e-5, 1e4)


def spike_code(x: torch.Tensor) -> torch.Tensor:
    """`round(x / t) * t` with `t = mean|x| / 3` over the last dimension, clamped to [1e-5, 1e4].

    In the published dtype order: the mean in `x`'s dtype, the threshold and
    the count in float32, the product cast back to `x`'s dtype.
    """
    threshold = (x.abs().mean(-1, keepdim=True).float() / SPIKE_THRESHOLD_DIVISOR).clamp(*_THRESHOLD_RANGE)
    return ((x / threshold).round() * threshold).to(x.dtype)


def int8_round_trip(x: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 rounding per vector of the last dimension (`quantize_sym(x, bit=8)`)."""
    scale = (x.abs().amax(-1, keepdim=True).float() / 127).clamp(*_THRESHOLD_RANGE)
    return ((x / scale).round().clamp(-128, 127) * scale).to(x.dtype)


def per_head(code: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """`code` applied to each head's vector of `x` [tokens, heads * head_dim]."""
    return code(x.reshape(*x.shape[:-1], -1, head_dim)).reshape(x.shape)


def spike_coded(config: object, quantized_weights: Collection[str]) -> bool:
    """True when this checkpoint is served with W8ASpike's activation coding."""
    mode = getattr(config, CONFIG_KEY, "spike")
    if mode not in ACTIVATION_MODES:
        raise ValueError(f"{CONFIG_KEY} must be one of {ACTIVATION_MODES}, not {mode!r}")
    return bool(quantized_weights) and mode == "spike"
