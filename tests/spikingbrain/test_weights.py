"""Reading both published weight layouts: the gate's shape and W8ASpike's weight grid."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from engine.spikingbrain.reference import GLAswaReference, load_weights
from engine.spikingbrain.weights import (
    QUANT_SCALES_SUFFIX,
    checkpoint_tensor_names,
    fake_quantize,
    gate_layout,
    quantized_weight_names,
    with_weight_quantizers_applied,
)


def test_fake_quantize_is_the_published_group_rounding() -> None:
    weight = torch.randn(4, 256, generator=torch.Generator().manual_seed(0)).bfloat16()
    scales = weight.float().reshape(4, 2, 128).abs().amax(-1, keepdim=True).div(127).bfloat16()
    # W8ASpike's Quantizer.forward, written out.
    want = ((weight.reshape(4, -1, 128) / scales).round() * scales).reshape(4, 256).to(weight.dtype)
    got = fake_quantize(weight, scales)
    assert torch.equal(got, want)
    assert not torch.equal(got, weight)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_quantizers_apply_whatever_the_order(order: tuple[int, ...]) -> None:
    weight = torch.full((2, 128), 0.3)
    scales = torch.full((2, 1, 1), 0.25)
    items = [("a.weight", weight), ("a" + QUANT_SCALES_SUFFIX, scales), ("b.bias", torch.ones(2))]
    got = dict(with_weight_quantizers_applied([items[i] for i in order], {"a.weight"}))
    assert set(got) == {"a.weight", "b.bias"}
    assert torch.equal(got["a.weight"], torch.full((2, 128), 0.25))


def test_missing_scales_are_an_error() -> None:
    with pytest.raises(ValueError, match="scales"):
        list(with_weight_quantizers_applied([("a.weight", torch.ones(1, 128))], {"a.weight"}))


def test_layouts_are_read_from_tensor_names(gla_swa_checkpoint: Path, w8aspike_checkpoint: Path) -> None:
    plain, w8 = checkpoint_tensor_names(gla_swa_checkpoint), checkpoint_tensor_names(w8aspike_checkpoint)
    assert gate_layout(plain) == "low_rank" and not quantized_weight_names(plain)
    assert gate_layout(w8) == "full"
    # The published fused SwiGLU-linear reads down_proj's raw weight: its scales go unused.
    assert "model.layers.0.mlp.up_proj.weight" in quantized_weight_names(w8)
    assert "model.layers.0.mlp.down_proj.weight" not in quantized_weight_names(w8)
    assert "model.layers.0.mlp.down_proj.weight_quantizer.scales" in w8


def test_down_proj_stays_raw_and_its_scales_are_dropped() -> None:
    down, up = "l.mlp.down_proj", "l.mlp.up_proj"
    weight = torch.full((1, 128), 0.3)
    scales = torch.full((1, 1, 1), 0.25)
    items = [
        (f"{n}{s}", t) for n in (down, up) for s, t in ((".weight", weight), (QUANT_SCALES_SUFFIX, scales))
    ]
    got = dict(with_weight_quantizers_applied(items, quantized_weight_names(n for n, _ in items)))
    assert set(got) == {f"{down}.weight", f"{up}.weight"}
    assert torch.equal(got[f"{down}.weight"], weight)
    assert torch.equal(got[f"{up}.weight"], torch.full((1, 128), 0.25))


def test_reference_puts_w8aspike_weights_on_their_grid(w8aspike_checkpoint: Path) -> None:
    """Dropping the scales changes the logits: the grid is really applied."""
    reference = GLAswaReference.from_pretrained(w8aspike_checkpoint)
    raw = {n: t for n, t in load_weights(w8aspike_checkpoint).items() if not n.endswith(QUANT_SCALES_SUFFIX)}
    unquantized = GLAswaReference(reference.config, raw)
    ids = [5, 50, 500, 5000, 50000]
    assert (reference.prefill_logits(ids) - unquantized.prefill_logits(ids)).abs().max() > 1e-3
