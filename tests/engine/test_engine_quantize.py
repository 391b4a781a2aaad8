"""The quantizer's math and checkpoint layout, checked against compressed-tensors' own code (no vLLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32, unpack_from_int32
from compressed_tensors.quantization import QuantizationConfig, preset_name_to_scheme
from compressed_tensors.quantization.lifecycle.forward import quantize
from compressed_tensors.quantization.utils import calculate_qparams
from safetensors import safe_open

from engine.__main__ import main
from engine.architectures import register_architecture
from engine.checkpoint import build_checkpoint, checkpoint_is_complete
from engine.quantization import SCHEMES, ensure_quantized, get_scheme, quantize_checkpoint
from engine.quantization.convert import is_quantized_projection
from engine.quantization.tensors import compress_weight, dequantize, pack_int32, quantize_rtn, unpack_int32
from engine.spikingbrain.checkpoint import GlaSwaW8ASpikeWriter
from engine.spikingbrain.weights import RAW_WEIGHT_SUFFIXES, fake_quantize


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, tokenizer_cache: Path) -> dict[str, Path]:
    """Tiny bf16 checkpoints of both architectures, and the W8ASpike layout."""
    register_architecture(GlaSwaW8ASpikeWriter.name, GlaSwaW8ASpikeWriter())
    root = tmp_path_factory.mktemp("quant-src")
    return {
        arch: build_checkpoint(root / arch, "tiny", 0, arch, cache_dir=tokenizer_cache)
        for arch in ("qwen2", "gla_swa", GlaSwaW8ASpikeWriter.name)
    }


def test_packing_matches_compressed_tensors() -> None:
    codes = torch.randint(-8, 8, (48, 256), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    packed = pack_int32(codes, 4)
    assert torch.equal(packed, pack_to_int32(codes, 4))
    assert torch.equal(unpack_int32(packed, 4, 256), codes)
    assert torch.equal(unpack_from_int32(packed, 4, torch.Size([48, 256])), codes)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_rtn_matches_compressed_tensors(name: str) -> None:
    """Same scales as its min/max observer, same codes as its `quantize`."""
    scheme = get_scheme(name)
    args = preset_name_to_scheme(scheme.preset, ["Linear"]).weights
    assert args is not None
    weight = torch.randn(64, 256, generator=torch.Generator().manual_seed(1)) * 0.05
    codes, scale = quantize_rtn(weight, scheme, torch.float32)
    group = scheme.group_size or weight.shape[1]
    grouped = weight.reshape(64, -1, group)
    their_scale, _ = calculate_qparams(grouped.amin(-1), grouped.amax(-1), args)
    torch.testing.assert_close(scale, their_scale.float())
    zero = torch.zeros_like(scale)
    theirs = quantize(x=weight, scale=scale, zero_point=zero, args=args, dtype=torch.int8)
    assert torch.equal(codes, theirs)
    step = scale.repeat_interleave(group, dim=1)
    assert ((dequantize(codes, scale) - weight).abs() <= step * 0.5 + 1e-7).all()


def test_only_decoder_projections_are_quantized() -> None:
    assert is_quantized_projection("model.layers.3.self_attn.q_proj.weight")
    assert is_quantized_projection("model.layers.0.attn.o_proj.weight")
    assert is_quantized_projection("model.layers.11.mlp.down_proj.weight")
    for name in (
        "model.layers.0.attn.gk_proj.0.weight",
        "model.layers.0.attn.gk_proj.weight",
        "model.layers.0.attn.q_proj.bias",
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.layers.0.attn.g_norm.weight",
    ):
        assert not is_quantized_projection(name), name


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("arch", ["qwen2", "gla_swa", "gla_swa_w8aspike"])
def test_checkpoint_layout(sources: dict[str, Path], tmp_path: Path, arch: str, scheme: str) -> None:
    source = sources[arch]
    out = quantize_checkpoint(source, tmp_path / "q", scheme)
    assert checkpoint_is_complete(out)
    plan = get_scheme(scheme)
    config = json.loads((out / "config.json").read_text())
    quant = QuantizationConfig.model_validate(config["quantization_config"])
    assert quant.format == plan.format
    assert quant.quant_method == "compressed-tensors"
    assert "lm_head" in (quant.ignore or [])
    assert {"tokenizer.json", "generation_config.json"} <= {p.name for p in out.iterdir()}

    before, after = _tensors(source), _tensors(out)
    projections = [n for n in before if is_quantized_projection(n)]
    assert len(projections) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    for name in projections:
        module = name.removesuffix(".weight")
        if plan.format == "int-quantized":
            codes, scale = after[f"{module}.weight"], after[f"{module}.weight_scale"]
            assert codes.dtype == torch.int8
            assert scale.dtype == torch.float32
            assert scale.shape == (codes.shape[0], 1)
        else:
            packed, scale = after[f"{module}.weight_packed"], after[f"{module}.weight_scale"]
            assert packed.dtype == torch.int32
            assert scale.dtype == torch.bfloat16
            assert after[f"{module}.weight_shape"].tolist() == list(before[name].shape)
            codes = unpack_int32(packed, 4, before[name].shape[1])
        assert codes.shape == before[name].shape
        # Rounding costs at most half a step; the largest positive value of a group
        # can cost a whole one (absmax / 127.5 or / 7.5 puts it at +qmax + 0.5, clamped).
        step = scale.float().repeat_interleave(codes.shape[1] // scale.shape[1], dim=1)
        expected = _on_w8aspike_grid(before, name)
        error = (dequantize(codes, scale) - expected.float()).abs()
        assert (error <= step * 1.001).all()
        assert error.mean() <= 0.3 * step.mean()
    for name, tensor in after.items():
        if name in before and name not in projections:
            # W8ASpike's own int8 grid is applied, as the plugin applies it at load.
            expected = _on_w8aspike_grid(before, name)
            assert torch.equal(tensor, expected), f"{name} must be copied unchanged"
    assert not any(n.endswith("weight_quantizer.scales") for n in after)
    gates = {n.removesuffix(".weight") for n in before if ".gk_proj" in n and n.endswith(".weight")}
    assert gates <= set(quant.ignore or [])


def _on_w8aspike_grid(before: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A source weight as the published W8ASpike model computes with it: on its grid when it has
    scales, except `down_proj`, which the published fused SwiGLU-linear reads raw."""
    grid = before.get(name.removesuffix(".weight") + ".weight_quantizer.scales")
    if grid is None or name.endswith(RAW_WEIGHT_SUFFIXES):
        return before[name]
    return fake_quantize(before[name], grid)


def test_compress_weight_names() -> None:
    weight = torch.randn(32, 128, dtype=torch.bfloat16)
    assert set(compress_weight("m.q_proj", weight, get_scheme("w8a8"), torch.bfloat16)) == {
        "m.q_proj.weight",
        "m.q_proj.weight_scale",
    }
    assert set(compress_weight("m.q_proj", weight, get_scheme("w4a16"), torch.bfloat16)) == {
        "m.q_proj.weight_packed",
        "m.q_proj.weight_scale",
        "m.q_proj.weight_shape",
    }


def test_ensure_reuses_and_rewrites(sources: dict[str, Path], tmp_path: Path) -> None:
    out = ensure_quantized(sources["gla_swa"], tmp_path / "q", "w8a8")
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert ensure_quantized(sources["gla_swa"], out, "w8a8") == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    ensure_quantized(sources["gla_swa"], out, "w4a16")
    assert json.loads((out / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"


def test_refuses_a_quantized_source_and_foreign_dirs(sources: dict[str, Path], tmp_path: Path) -> None:
    out = quantize_checkpoint(sources["qwen2"], tmp_path / "q", "w8a8")
    with pytest.raises(ValueError, match="already quantized"):
        quantize_checkpoint(out, tmp_path / "again", "w4a16")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        quantize_checkpoint(sources["qwen2"], foreign, "w8a8")
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        get_scheme("w3a3")


def test_cli(sources: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["quantize", "--scheme", "w4a16", "--model", str(sources["gla_swa"]), "--out", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out.absolute())
    assert main(args) == 0
    assert main([*args, "--force"]) == 0
    assert main(["quantize", "--model", str(out)]) == 2
    assert "already quantized" in capsys.readouterr().err
    assert main(["quantize", "--model", str(tmp_path / "missing")]) == 2
