"""The two published SpikingBrain-7B weight layouts, and how to read either.

- `hf_7B_model` (bf16): the GLA forget gate is low-rank, `attn.gk_proj.0`
  (hidden -> 16) then `attn.gk_proj.1` (16 -> kv heads x head dim, biased).
- `W8ASpike`: every projection is a `QuantLinear` whose `weight_quantizer.scales`
  ([out, in / 128, 1]) put the bf16 weight on an int8-range grid, group-wise,
  on the fly; its gate is one full-rank `attn.gk_proj` (hidden -> kv x head dim).

Both run here: the gate layout is read from the checkpoint's tensor names, and
a weight with scales is rounded onto its grid once, at load, exactly as the
published `Quantizer.forward` does on every call. W8ASpike's activation spike
coding is not reproduced (see docs/spikingbrain.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import torch

__all__ = [
    "QUANT_SCALES_SUFFIX",
    "GateLayout",
    "checkpoint_tensor_names",
    "fake_quantize",
    "gate_layout",
    "quantized_weight_names",
    "with_weight_quantizers_applied",
]

GateLayout = Literal["low_rank", "full"]
QUANT_SCALES_SUFFIX = ".weight_quantizer.scales"


def checkpoint_tensor_names(model_dir: str | Path) -> set[str]:
    """Tensor names of a local checkpoint, from its index or the safetensors headers (no data read)."""
    from safetensors import safe_open

    root = Path(model_dir)
    index = root / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    names: set[str] = set()
    for shard in sorted(root.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            names.update(handle.keys())
    return names


def gate_layout(names: Iterable[str]) -> GateLayout:
    """`full` when the checkpoint has a single `attn.gk_proj` (W8ASpike), else `low_rank`."""
    return "full" if any(n.endswith(".attn.gk_proj.weight") for n in names) else "low_rank"


def quantized_weight_names(names: Iterable[str]) -> set[str]:
    """The `*.weight` tensors that come with group-quantization scales."""
    return {n[: -len(QUANT_SCALES_SUFFIX)] + ".weight" for n in names if n.endswith(QUANT_SCALES_SUFFIX)}


def fake_quantize(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Round `weight` [out, in] to multiples of its per-(row, group) `scales` [out, in / G, 1]."""
    out_features, in_features = weight.shape
    grouped = weight.reshape(out_features, scales.shape[1], -1)
    return ((grouped / scales).round() * scales).reshape(out_features, in_features).to(weight.dtype)


def with_weight_quantizers_applied(
    weights: Iterable[tuple[str, torch.Tensor]], quantized: set[str]
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield the checkpoint's tensors with each quantized weight already on its grid.

    Scales are consumed, not yielded. A weight and its scales may arrive in
    either order (or in different shards); whichever comes first waits.
    """
    waiting_weights: dict[str, torch.Tensor] = {}
    waiting_scales: dict[str, torch.Tensor] = {}
    for name, tensor in weights:
        if name.endswith(QUANT_SCALES_SUFFIX):
            weight_name = name[: -len(QUANT_SCALES_SUFFIX)] + ".weight"
            if weight_name in waiting_weights:
                yield weight_name, fake_quantize(waiting_weights.pop(weight_name), tensor)
            else:
                waiting_scales[weight_name] = tensor
        elif name in quantized:
            if name in waiting_scales:
                yield name, fake_quantize(tensor, waiting_scales.pop(name))
            else:
                waiting_weights[name] = tensor
        else:
            yield name, tensor
    if waiting_weights or waiting_scales:
        missing = sorted(waiting_weights) + sorted(waiting_scales)
        raise ValueError(f"quantized weights without their scales, or scales without weights: {missing[:5]}")
