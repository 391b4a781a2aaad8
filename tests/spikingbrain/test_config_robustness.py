"""Config robustness: `head_dim` set and checked, the gate constants honoured, hub ids resolved
through the local Hugging Face cache, and a checkpoint tensor with no place named in the error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.quantization import quantize_checkpoint
from engine.spikingbrain.checkpoint import GlaSwaWriter
from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.reference import GLAswaReference
from engine.spikingbrain.weights import (
    UnexpectedTensorError,
    check_quantized_tensor,
    check_tensors,
    expected_shapes,
    gate_layout,
    local_snapshot,
    tensor_names,
)


def _tiny(**overrides: Any) -> tuple[GLAswaConfig, dict[str, torch.Tensor]]:
    writer = GlaSwaWriter()
    config = {**writer.config("tiny"), **overrides}
    return GLAswaConfig(**config), writer.tensors(config, torch.Generator().manual_seed(0))


def test_head_dim_is_derived_as_published_and_settable(tmp_path: Path) -> None:
    assert GLAswaConfig(hidden_size=3584, num_attention_heads=28).head_dim == 128
    config = GLAswaConfig(hidden_size=128, num_attention_heads=8, num_key_value_heads=2, head_dim=128)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["head_dim"] == 128
    assert GLAswaConfig.from_pretrained(tmp_path).head_dim == 128


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden_size": 100, "num_attention_heads": 3, "num_key_value_heads": 1}, "not a multiple"),
        ({"num_attention_heads": 8, "num_key_value_heads": 3}, "multiple of num_key_value_heads"),
        ({"head_dim": 127}, "even"),
        ({"gate_logit_normalizer": 0}, "positive"),
        ({"gate_low_rank_dim": 0}, "positive"),
    ],
)
def test_inconsistent_shapes_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GLAswaConfig(**fields)


def test_head_dim_wider_than_hidden_over_heads_runs_in_the_reference() -> None:
    """q/k/v/o are heads x head_dim wide, the GLA state head_dim x head_dim."""
    config, weights = _tiny(head_dim=32, num_attention_heads=4, num_key_value_heads=2)
    assert weights["model.layers.0.attn.q_proj.weight"].shape == (128, 128)
    assert weights["model.layers.0.attn.g_norm.weight"].shape == (32,)
    reference = GLAswaReference(config, weights)
    assert len(reference.generate_greedy([1, 2, 3], 3)) == 3


def test_gate_logit_normalizer_is_honoured() -> None:
    """The gate's divisor comes from the config: a different one changes the GLA layers' output."""
    config, weights = _tiny()
    published = GLAswaReference(config, weights).prefill_logits(list(range(40, 60)))
    config8, _ = _tiny(gate_logit_normalizer=8)
    other = GLAswaReference(config8, weights).prefill_logits(list(range(40, 60)))
    assert float((published - other).abs().max()) > 1e-4


def test_vllm_loader_names_what_does_not_fit() -> None:
    """The vLLM model runs the same check on every tensor before a weight loader sees it."""
    pytest.importorskip("vllm")
    from types import SimpleNamespace

    from engine.spikingbrain.vllm_model import GLAswaForCausalLM

    config, _ = _tiny()
    expected = expected_shapes(config, "low_rank")
    model: Any = SimpleNamespace(_gate="low_rank", _expected=expected, _quantized_serving=False)
    GLAswaForCausalLM._check(model, "model.layers.0.attn.q_proj.weight", torch.zeros(128, 128))
    with pytest.raises(UnexpectedTensorError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight.*shape"):
        GLAswaForCausalLM._check(model, "model.layers.0.mlp.gate_proj.weight", torch.zeros(64, 128))
    with pytest.raises(UnexpectedTensorError, match=r"model\.layers\.2\.attn\.q_proj\.weight"):
        GLAswaForCausalLM._check(model, "model.layers.2.attn.q_proj.weight", torch.zeros(128, 128))
    with pytest.raises(UnexpectedTensorError, match="W8ASpike's layout"):
        GLAswaForCausalLM._check(model, "model.layers.0.attn.gk_proj.weight", torch.zeros(64, 128))
    # Served quantized (compressed-tensors), the projections come with their scales.
    quantized: Any = SimpleNamespace(_gate="low_rank", _expected=expected, _quantized_serving=True)
    GLAswaForCausalLM._check(quantized, "model.layers.0.attn.q_proj.weight_scale", torch.zeros(128, 1))
    with pytest.raises(UnexpectedTensorError, match=r"model\.layers\.2\.attn\.q_proj\.weight_scale"):
        GLAswaForCausalLM._check(quantized, "model.layers.2.attn.q_proj.weight_scale", torch.zeros(128, 1))


def test_gate_low_rank_dim_is_honoured() -> None:
    config, weights = _tiny(gate_low_rank_dim=8)
    assert weights["model.layers.0.attn.gk_proj.0.weight"].shape == (8, 128)
    GLAswaReference(config, weights)
    published, _ = _tiny()
    with pytest.raises(UnexpectedTensorError, match=r"gk_proj\.0\.weight.*\(8, 128\).*\(16, 128\)"):
        GLAswaReference(published, weights)


def test_unexpected_tensor_is_named() -> None:
    config, weights = _tiny()
    weights["model.layers.7.attn.q_proj.weight"] = torch.zeros(128, 128)
    with pytest.raises(UnexpectedTensorError, match=r"'model\.layers\.7\.attn\.q_proj\.weight' has no place"):
        GLAswaReference(config, weights)
    with pytest.raises(UnexpectedTensorError, match=r"rotary_emb\.inv_freq"):
        check_tensors(expected_shapes(config, "low_rank"), {"model.layers.0.attn.rotary_emb.inv_freq": (32,)})


@pytest.mark.parametrize("scheme", ["w8a8", "w4a16"])
def test_quantized_checkpoints_pass_the_check(scheme: str, gla_swa_checkpoint: Path, tmp_path: Path) -> None:
    """`engine quantize`'s compressed-tensors output (int8 weights and scales; 4-bit packed weights,
    scales and shapes) loads under the check; a stray tensor is still named."""
    from safetensors import safe_open

    config = GLAswaConfig(**json.loads((gla_swa_checkpoint / "config.json").read_text()))
    quantized = quantize_checkpoint(gla_swa_checkpoint, tmp_path / scheme, scheme)
    expected = expected_shapes(config, "low_rank")
    with safe_open(str(quantized / "model.safetensors"), "pt") as tensors:
        for name in tensors.keys():  # noqa: SIM118 (safe_open has no __iter__)
            check_quantized_tensor(expected, name, tensors.get_slice(name).get_shape())
    with pytest.raises(UnexpectedTensorError, match=r"layers\.9\.mlp\.up_proj\.weight_scale"):
        check_quantized_tensor(expected, "model.layers.9.mlp.up_proj.weight_scale", (256, 1))
    check_quantized_tensor(expected, "model.layers.1.attn.attn.k_scale", ())  # kv-cache scales pass


def test_expected_shapes_are_the_writers() -> None:
    """The check and the random checkpoints agree on every name and shape, both gate layouts."""
    for overrides in ({}, {"head_dim": 128, "num_attention_heads": 8, "num_key_value_heads": 2}):
        config, weights = _tiny(**overrides)
        want = expected_shapes(config, gate_layout(weights))
        assert {name: tuple(t.shape) for name, t in weights.items()} == want


def _fake_hub_cache(cache: Path, repo: str, checkpoint: Path) -> Path:
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0" * 40
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint / name, snapshot / name)
    return snapshot


def test_hub_id_resolves_to_its_cached_snapshot(
    tmp_path: Path, w8aspike_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _fake_hub_cache(tmp_path, "Abel2076/SpikingBrain-7B-W8ASpike", w8aspike_checkpoint)
    assert local_snapshot("Abel2076/SpikingBrain-7B-W8ASpike", cache_dir=str(tmp_path)) == snapshot
    names = tensor_names("Abel2076/SpikingBrain-7B-W8ASpike", cache_dir=str(tmp_path))
    assert gate_layout(names) == "full"
    # Not cached, offline: nothing known, nothing fetched (the loader then names what does not fit).
    assert tensor_names("Panyuqi/V1-7B-base", cache_dir=str(tmp_path)) == set()
    assert local_snapshot("not a repo id!", cache_dir=str(tmp_path)) is None
