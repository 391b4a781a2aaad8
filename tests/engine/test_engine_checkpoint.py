"""Random-weight checkpoints: deterministic, complete or absent, shaped like Qwen2.5's."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from engine.architectures import architecture_names, get_architecture, register_architecture
from engine.architectures.qwen2 import Qwen2Writer
from engine.checkpoint import (
    MANIFEST_NAME,
    build_checkpoint,
    checkpoint_is_complete,
    ensure_checkpoint,
    read_manifest,
)
from engine.presets import PRESETS, Preset, get_preset

REQUIRED_FILES = {
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    MANIFEST_NAME,
}


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Architectures registered by a test disappear after it."""
    from engine.architectures import registry

    monkeypatch.setattr(registry, "_LAZY", dict(registry._LAZY))
    monkeypatch.setattr(registry, "_LOADED", dict(registry._LOADED))


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_files_present_and_complete(built_tiny_checkpoint: Path) -> None:
    assert {p.name for p in built_tiny_checkpoint.iterdir()} == REQUIRED_FILES
    assert checkpoint_is_complete(built_tiny_checkpoint)
    assert checkpoint_is_complete(built_tiny_checkpoint, verify_hashes=True)
    manifest = read_manifest(built_tiny_checkpoint)
    assert manifest is not None
    assert (manifest["architecture"], manifest["preset"], manifest["seed"]) == ("qwen2", "tiny", 0)


def test_same_seed_same_bytes(built_tiny_checkpoint: Path, tmp_path: Path, tokenizer_cache: Path) -> None:
    again = build_checkpoint(
        tmp_path / "again", "tiny", seed=0, architecture="qwen2", cache_dir=tokenizer_cache
    )
    assert _hashes(again) == _hashes(built_tiny_checkpoint)


def test_other_seed_other_weights(built_tiny_checkpoint: Path, tmp_path: Path, tokenizer_cache: Path) -> None:
    other = build_checkpoint(
        tmp_path / "seed1", "tiny", seed=1, architecture="qwen2", cache_dir=tokenizer_cache
    )
    ours, theirs = _hashes(built_tiny_checkpoint), _hashes(other)
    assert ours["model.safetensors"] != theirs["model.safetensors"]
    assert ours["tokenizer.json"] == theirs["tokenizer.json"]


def test_config(built_tiny_checkpoint: Path) -> None:
    config = json.loads((built_tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["model_type"] == "qwen2"
    assert config["vocab_size"] == 151936
    assert config["torch_dtype"] == "bfloat16"
    assert config["tie_word_embeddings"] is True
    assert config["hidden_size"] == 128
    assert config["num_hidden_layers"] == 2
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0
    assert config["max_position_embeddings"] == 4096
    assert config["bos_token_id"] == 151643
    assert config["eos_token_id"] == 151645
    generation = json.loads((built_tiny_checkpoint / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643]
    assert "temperature" not in generation
    tokenizer_config = json.loads((built_tiny_checkpoint / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == 4096


def test_transformers_reads_the_config(built_tiny_checkpoint: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(built_tiny_checkpoint))
    assert type(config).__name__ == "Qwen2Config"
    assert config.vocab_size == 151936


def test_tensors(built_tiny_checkpoint: Path) -> None:
    with safe_open(str(built_tiny_checkpoint / "model.safetensors"), framework="pt") as weights:
        names = set(weights.keys())
        embed = weights.get_tensor("model.embed_tokens.weight")
        q_proj = weights.get_tensor("model.layers.0.self_attn.q_proj.weight")
        k_proj = weights.get_tensor("model.layers.1.self_attn.k_proj.weight")
        norm = weights.get_tensor("model.norm.weight")
        dtypes = {weights.get_tensor(name).dtype for name in names}
    assert dtypes == {torch.bfloat16}
    assert "lm_head.weight" not in names  # tied
    assert len(names) == 1 + 2 * 12 + 1
    assert embed.shape == (151936, 128)
    assert q_proj.shape == (128, 128)
    assert k_proj.shape == (64, 128)
    assert torch.equal(norm, torch.ones(128, dtype=torch.bfloat16))
    assert 0.015 < embed.float().std().item() < 0.025
    assert embed.float().abs().sum().item() > 0


def test_greedy_generation_depends_on_context(built_tiny_checkpoint: Path) -> None:
    """Random weights, but not degenerate: different prompts give different, varied continuations."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding

    tokenizer = AutoTokenizer.from_pretrained(str(built_tiny_checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(built_tiny_checkpoint), dtype=torch.bfloat16)
    outputs = []
    for prompt in ("hi", "Tell me a story about a dragon."):
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        assert isinstance(inputs, BatchEncoding)  # return_dict=True
        # transformers annotates the Auto class's model as `_BaseModelWithGenerate`, which its own
        # `generate(self: GenerativePreTrainedModel)` does not accept; the loaded model is a real one.
        generated = model.generate(  # type: ignore[misc]
            **inputs, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=151643
        )
        outputs.append(generated[0, inputs["input_ids"].shape[1] :].tolist())
    assert outputs[0] != outputs[1]
    assert all(len(set(tokens)) > 4 for tokens in outputs)


def test_incomplete_checkpoints_are_detected(built_tiny_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in built_tiny_checkpoint.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert checkpoint_is_complete(copy)

    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])
    assert not checkpoint_is_complete(copy)

    (copy / MANIFEST_NAME).unlink()
    assert not checkpoint_is_complete(copy)
    assert not checkpoint_is_complete(tmp_path / "missing")


def test_tampered_file_fails_hash_check(built_tiny_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in built_tiny_checkpoint.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"qwen2"', '"qwen3"'))
    assert checkpoint_is_complete(copy)  # same size: only hashing notices
    assert not checkpoint_is_complete(copy, verify_hashes=True)


class _ExplodingWriter(Qwen2Writer):
    name = "exploding"

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise RuntimeError("interrupted mid-build")


def test_interrupted_build_leaves_nothing_that_looks_complete(tmp_path: Path, tokenizer_cache: Path) -> None:
    register_architecture("exploding", _ExplodingWriter())
    out = tmp_path / "ck"
    with pytest.raises(RuntimeError, match="interrupted"):
        build_checkpoint(out, "tiny", architecture="exploding", cache_dir=tokenizer_cache)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rebuild_keeps_the_old_checkpoint(tmp_path: Path, tokenizer_cache: Path) -> None:
    register_architecture("exploding", _ExplodingWriter())
    out = build_checkpoint(tmp_path / "ck", "tiny", cache_dir=tokenizer_cache)
    with pytest.raises(RuntimeError):
        build_checkpoint(out, "tiny", architecture="exploding", cache_dir=tokenizer_cache)
    assert checkpoint_is_complete(out)


def test_stale_partial_builds_are_swept(tmp_path: Path, tokenizer_cache: Path) -> None:
    stale = tmp_path / ".ck.partial-999999999-deadbeef"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    build_checkpoint(tmp_path / "ck", "tiny", cache_dir=tokenizer_cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_refuses_to_replace_a_directory_that_is_not_a_checkpoint(
    tmp_path: Path, tokenizer_cache: Path
) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_checkpoint(out, "tiny", cache_dir=tokenizer_cache)
    assert (out / "notes.txt").read_text() == "keep me"


def test_ensure_checkpoint_reuses_then_rebuilds_on_a_new_recipe(
    tmp_path: Path, tokenizer_cache: Path
) -> None:
    out = ensure_checkpoint(tmp_path / "ck", "tiny", seed=0, cache_dir=tokenizer_cache)
    first = (out / "model.safetensors").stat().st_ino
    assert ensure_checkpoint(out, "tiny", seed=0, cache_dir=tokenizer_cache) == out
    assert (out / "model.safetensors").stat().st_ino == first
    ensure_checkpoint(out, "tiny", seed=3, cache_dir=tokenizer_cache)
    manifest = read_manifest(out)
    assert manifest is not None and manifest["seed"] == 3


def test_unknown_names_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_checkpoint(tmp_path / "x", "huge")
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        build_checkpoint(tmp_path / "x", "tiny", architecture="nope")
    assert not (tmp_path / "x").exists()


def test_lazy_registration_reports_an_unloadable_writer() -> None:
    register_architecture("ghost", "engine.no_such_module:Writer")
    assert "ghost" in architecture_names()
    with pytest.raises(ValueError, match="cannot be loaded"):
        get_architecture("ghost")


def test_registry_knows_the_built_in_architectures() -> None:
    assert {"qwen2", "gla_swa", "idefics3", "long_vita"} <= set(architecture_names())
    assert get_architecture("qwen2").name == "qwen2"


def _parameter_count(preset: Preset) -> int:
    h, layers, inter, vocab = (
        preset.hidden_size,
        preset.num_hidden_layers,
        preset.intermediate_size,
        preset.vocab_size,
    )
    kv = preset.num_key_value_heads * preset.head_dim
    attention = h * h * 2 + h * kv * 2 + h + 2 * kv
    per_layer = attention + 3 * h * inter + 2 * h
    return vocab * h * (1 if preset.tie_word_embeddings else 2) + layers * per_layer + h


def test_presets() -> None:
    tiny, small = get_preset("tiny"), get_preset("small")
    assert tiny.head_dim == 64
    assert small.head_dim == 128
    assert 200e6 < _parameter_count(small) < 500e6
    assert set(PRESETS) == {"tiny", "small", "medium", "tiny-vl", "tiny-long-vita", "7b-shaped"}
    shaped = get_preset("7b-shaped")
    assert shaped.head_dim == 128 and shaped.hidden_size < shaped.num_attention_heads * shaped.head_dim
    with pytest.raises(ValueError):
        Preset(
            "bad",
            hidden_size=100,
            num_hidden_layers=1,
            num_attention_heads=3,
            num_key_value_heads=1,
            intermediate_size=8,
            max_position_embeddings=8,
        )


def test_default_architecture_is_spikingbrain() -> None:
    """`make run` and the test engine serve the SpikingBrain core unless told otherwise."""
    from engine.architectures import DEFAULT_ARCHITECTURE

    assert DEFAULT_ARCHITECTURE == "gla_swa"
    assert get_architecture(DEFAULT_ARCHITECTURE).config(get_preset("tiny"))["model_type"] == "gla_swa"
