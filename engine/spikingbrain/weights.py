"""The two published SpikingBrain-7B weight layouts, and how to read either.

- `hf_7B_model` (bf16): the GLA forget gate is low-rank, `attn.gk_proj.0`
  (hidden -> 16) then `attn.gk_proj.1` (16 -> kv heads x head dim, biased).
- `W8ASpike`: every projection is a `QuantLinear` whose `weight_quantizer.scales`
  ([out, in / 128, 1]) put the bf16 weight on an int8-range grid, group-wise,
  on the fly; its gate is one full-rank `attn.gk_proj` (hidden -> kv x head dim).

Both run here: the gate layout is read from the checkpoint's tensor names (a
local directory, or a hub id's snapshot in the local Hugging Face cache), every
name and shape is checked against the config before anything loads, and
a weight with scales is rounded onto its grid once, at load, exactly as the
published `Quantizer.forward` does on every call (all but `down_proj`, which the
published model reads raw). W8ASpike's activation coding is in `w8aspike.py`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from engine.spikingbrain.config import GLAswaConfig

__all__ = [
    "QUANT_SCALES_SUFFIX",
    "RAW_WEIGHT_SUFFIXES",
    "GateLayout",
    "UnexpectedTensorError",
    "check_quantized_tensor",
    "check_tensors",
    "checkpoint_tensor_names",
    "expected_shapes",
    "fake_quantize",
    "gate_layout",
    "local_snapshot",
    "quantized_weight_names",
    "tensor_names",
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


def local_snapshot(model: str, revision: str | None = None, cache_dir: str | None = None) -> Path | None:
    """The local directory holding `model`: itself when it is one, else a hub id's snapshot in the
    local Hugging Face cache (nothing is downloaded; None when the id is not cached)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except (HFValidationError, LocalEntryNotFoundError, OSError):
        return None


def tensor_names(model: str, revision: str | None = None, cache_dir: str | None = None) -> set[str]:
    """A checkpoint's tensor names: a local directory or cached hub snapshot read from disk; an
    uncached hub id's read from the hub's safetensors headers (no weights), unless HF_HUB_OFFLINE
    is set. Empty when none of these can say."""
    local = local_snapshot(model, revision, cache_dir)
    if local is not None:
        return checkpoint_tensor_names(local)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return set()
    from huggingface_hub import get_safetensors_metadata

    try:
        return set(get_safetensors_metadata(model, revision=revision).weight_map)
    except Exception:  # any hub failure leaves the layout to the weights themselves (checked at load)
        return set()


def expected_shapes(config: GLAswaConfig, layout: GateLayout) -> dict[str, tuple[int, ...]]:
    """Every tensor a `gla_swa` checkpoint of this config and gate layout holds, with its shape
    (W8ASpike's `weight_quantizer.scales` aside; `lm_head.weight` optional when tied)."""
    hidden, inter, dim = config.hidden_size, config.intermediate_size, config.head_dim
    q_width, kv_width = config.num_attention_heads * dim, config.num_key_value_heads * dim
    shapes: dict[str, tuple[int, ...]] = {
        "model.embeddings.weight": (config.vocab_size, hidden),
        "model.norm.weight": (hidden,),
        "lm_head.weight": (config.vocab_size, hidden),
    }
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes |= {p + "attn_norm.weight": (hidden,), p + "mlp_norm.weight": (hidden,)}
        shapes |= {p + "attn.q_proj.weight": (q_width, hidden), p + "attn.q_proj.bias": (q_width,)}
        for name in ("k", "v"):
            shapes[p + f"attn.{name}_proj.weight"] = (kv_width, hidden)
            shapes[p + f"attn.{name}_proj.bias"] = (kv_width,)
        shapes[p + "attn.o_proj.weight"] = (hidden, q_width)
        shapes |= {p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden)}
        shapes[p + "mlp.down_proj.weight"] = (hidden, inter)
        if config.is_window_layer(i):
            continue
        shapes[p + "attn.g_norm.weight"] = (dim,)
        if layout == "low_rank":
            rank = config.gate_low_rank_dim
            shapes[p + "attn.gk_proj.0.weight"] = (rank, hidden)
            shapes[p + "attn.gk_proj.1.weight"] = (kv_width, rank)
            shapes[p + "attn.gk_proj.1.bias"] = (kv_width,)
        else:
            shapes |= {p + "attn.gk_proj.weight": (kv_width, hidden), p + "attn.gk_proj.bias": (kv_width,)}
    return shapes


class UnexpectedTensorError(ValueError):
    """A checkpoint tensor this config has no place for, or of the wrong shape."""


def check_tensors(
    expected: Mapping[str, tuple[int, ...]], shapes: Mapping[str, tuple[int, ...] | torch.Size]
) -> None:
    """Refuse a checkpoint whose tensors do not fit `expected`, naming the first that does not."""
    for name, shape in shapes.items():
        if name.endswith(QUANT_SCALES_SUFFIX):
            name = name[: -len(QUANT_SCALES_SUFFIX)] + ".weight"
            shape = expected.get(name, ())
        if name not in expected:
            raise UnexpectedTensorError(
                f"checkpoint tensor {name!r} has no place in a gla_swa model of this config "
                "(check num_hidden_layers, attn_layers and the gate layout)"
            )
        if tuple(shape) != expected[name]:
            raise UnexpectedTensorError(
                f"checkpoint tensor {name!r} has shape {tuple(shape)}, the config gives {expected[name]} "
                "(check hidden_size, num_attention_heads, num_key_value_heads, head_dim, gate_low_rank_dim)"
            )


# What a compressed-tensors checkpoint (`engine quantize`, or llm-compressor's) keeps beside or
# instead of a projection's `.weight`; their shapes are the quantization method's to check.
_QUANTIZED_PARTS = re.compile(
    r"^(?P<base>.+)\.(?:weight|weight_scale|weight_zero_point|weight_packed|weight_shape|weight_g_idx"
    r"|input_scale|input_zero_point)$"
)
_KV_CACHE_SCALES = (".k_scale", ".v_scale", ".q_scale", ".prob_scale")


def check_quantized_tensor(
    expected: Mapping[str, tuple[int, ...]], name: str, shape: tuple[int, ...] | torch.Size
) -> None:
    """Refuse a tensor of a quantized checkpoint that belongs to no weight of this model (a tensor
    under a published name keeps its shape: int8 weights do, 4-bit ones are `weight_packed`)."""
    if name in expected:
        check_tensors(expected, {name: shape})
        return
    if name.endswith(_KV_CACHE_SCALES):
        return
    found = _QUANTIZED_PARTS.match(name)
    if found is None or f"{found.group('base')}.weight" not in expected:
        check_tensors(expected, {name: ()})


def gate_layout(names: Iterable[str]) -> GateLayout:
    """`full` when the checkpoint has a single `attn.gk_proj` (W8ASpike), else `low_rank`."""
    return "full" if any(n.endswith(".attn.gk_proj.weight") for n in names) else "low_rank"


# W8ASpike's MLP ends in a fused SwiGLU-linear that reads `down_proj.weight` itself, not through its
# `QuantLinear`: the published model never puts that weight on its grid (docs/spikingbrain.md).
RAW_WEIGHT_SUFFIXES = (".mlp.down_proj.weight",)


def quantized_weight_names(names: Iterable[str]) -> set[str]:
    """The `*.weight` tensors that come with group-quantization scales and that the published
    W8ASpike model computes with on their grid (all but `down_proj`, whose scales go unused)."""
    weights = {n[: -len(QUANT_SCALES_SUFFIX)] + ".weight" for n in names if n.endswith(QUANT_SCALES_SUFFIX)}
    return {n for n in weights if not n.endswith(RAW_WEIGHT_SUFFIXES)}


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
            if weight_name.endswith(RAW_WEIGHT_SUFFIXES):
                continue  # scales the published model never applies
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
