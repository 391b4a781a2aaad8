"""The configuration and the random checkpoints keep to the published SpikingBrain-7B contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.architectures import get_architecture
from engine.presets import get_preset
from engine.spikingbrain.checkpoint import GlaSwaWriter
from engine.spikingbrain.config import GLAswaConfig

# BICLab/SpikingBrain-7B, W8ASpike/config.json, minus the bookkeeping keys.
PUBLISHED_7B: dict[str, Any] = {
    "architectures": ["GLAswaForCausalLM"],
    "attention_dropout": 0.0,
    "attn_layers": list(range(1, 28, 2)),
    "attn_mode": "chunk",
    "bos_token_id": 151643,
    "conv_size": 4,
    "elementwise_affine": True,
    "eos_token_id": 151643,
    "fuse_cross_entropy": True,
    "hidden_act": "swish",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 131072,
    "model_type": "gla_swa",
    "norm_eps": 1e-06,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rope_theta": 1000000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "use_cache": True,
    "use_short_conv": False,
    "vocab_size": 152064,
}


def test_defaults_are_the_published_7b_config() -> None:
    config = GLAswaConfig(architectures=["GLAswaForCausalLM"])
    as_dict = config.to_dict()
    for key, value in PUBLISHED_7B.items():
        assert as_dict[key] == value, key
    assert config.head_dim == 128


def test_published_config_round_trips(tmp_path: Path) -> None:
    config = GLAswaConfig(**{**PUBLISHED_7B, "torch_dtype": "bfloat16", "transformers_version": "4.45.0"})
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in PUBLISHED_7B} == PUBLISHED_7B
    assert GLAswaConfig.from_pretrained(tmp_path).attn_layers == PUBLISHED_7B["attn_layers"]


def test_plugin_teaches_autoconfig_the_model_type(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from engine.spikingbrain.vllm_plugin import register

    register()
    register()  # idempotent: vLLM may load the entry point more than once
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_7B))
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GLAswaConfig)


def test_writer_is_registered_for_gla_swa() -> None:
    assert isinstance(get_architecture("gla_swa"), GlaSwaWriter)


def test_tiny_checkpoint_uses_published_names_and_shapes() -> None:
    writer = GlaSwaWriter()
    config = writer.config(get_preset("tiny"))
    tensors = writer.tensors(config, torch.Generator().manual_seed(0))
    hidden, heads, kv_heads = (
        config["hidden_size"],
        config["num_attention_heads"],
        config["num_key_value_heads"],
    )
    head_dim = hidden // heads
    assert config["attn_layers"] == [1] and config["sliding_window"] == 32
    expected = {"model.embeddings.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        expected |= {p + "attn_norm.weight", p + "mlp_norm.weight", p + "attn.o_proj.weight"}
        expected |= {p + f"attn.{n}_proj.{kind}" for n in "qkv" for kind in ("weight", "bias")}
        expected |= {p + f"mlp.{n}_proj.weight" for n in ("gate", "up", "down")}
        if i not in config["attn_layers"]:
            expected |= {p + "attn.gk_proj.0.weight", p + "attn.gk_proj.1.weight", p + "attn.gk_proj.1.bias"}
            expected |= {p + "attn.g_norm.weight"}
    assert set(tensors) == expected
    assert tensors["model.layers.0.attn.gk_proj.0.weight"].shape == (16, hidden)
    assert tensors["model.layers.0.attn.gk_proj.1.weight"].shape == (kv_heads * head_dim, 16)
    assert tensors["model.layers.0.attn.g_norm.weight"].shape == (head_dim,)
    assert tensors["model.layers.1.attn.k_proj.weight"].shape == (kv_heads * head_dim, hidden)
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())


def test_same_seed_same_weights() -> None:
    writer = GlaSwaWriter()
    config = writer.config("tiny")
    a = writer.tensors(config, torch.Generator().manual_seed(3))
    b = writer.tensors(config, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_small_preset_is_a_few_hundred_million_parameters() -> None:
    config = GlaSwaWriter().config("small")
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = config["num_key_value_heads"] * hidden // config["num_attention_heads"]
    per_layer = 2 * hidden * hidden + 2 * kv * hidden + 3 * hidden * inter
    total = 2 * config["vocab_size"] * hidden + layers * per_layer
    assert 200e6 < total < 700e6
    assert hidden // config["num_attention_heads"] == 128  # the 7B's head dim
