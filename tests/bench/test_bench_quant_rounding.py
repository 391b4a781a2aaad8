"""bench.quant_rounding: the rounded weights are the W8A8 converter's grid, the activation rounding is
vLLM's per-token int8, and a run on the tiny checkpoint writes its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.quant_rounding import int8_per_token, main, rounded_weights
from engine.checkpoint import ensure_checkpoint
from engine.quantization.schemes import get_scheme
from engine.quantization.tensors import compress_weight, dequantize
from engine.spikingbrain.reference import load_weights

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gla_swa_checkpoint() -> Path:
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "gla_swa-tiny", "tiny", 0, "gla_swa")


def test_rounded_weights_are_the_converters_grid(gla_swa_checkpoint: Path) -> None:
    weights = load_weights(gla_swa_checkpoint)
    rounded = rounded_weights(weights)
    name = "model.layers.0.mlp.up_proj"
    written = compress_weight(name, weights[name + ".weight"], get_scheme("w8a8"), torch.bfloat16)
    torch.testing.assert_close(
        rounded[name + ".weight"], dequantize(written[name + ".weight"], written[name + ".weight_scale"])
    )
    # Left as they are: embeddings, norms, the GLA gate, lm_head.
    for kept in ("model.embeddings.weight", "model.layers.0.attn.gk_proj.0.weight", "lm_head.weight"):
        assert rounded[kept] is weights[kept]


def test_int8_per_token_by_hand() -> None:
    # absmax 2.54 -> step 0.02: 1.0 -> 50 steps, 0.011 -> round(0.55) = 1 step; each row on its own.
    x = torch.tensor([[1.0, -2.54, 0.011], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(int8_per_token(x), torch.tensor([[1.0, -2.54, 0.02], [0.0, 0.0, 0.0]]))


def test_run_on_the_tiny_checkpoint_writes_its_table(gla_swa_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "rounding"
    assert main(["--model", str(gla_swa_checkpoint), "--new-tokens", "2", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {(r["dtype"], r["variant"]) for r in rows} >= {
        ("float32", "W8A8 weights"),
        ("bfloat16", "unquantized"),
    }
    assert all(r["positions"]["0.0"] <= 16 for r in rows)  # 8 prompts x 2 tokens
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").exists()
