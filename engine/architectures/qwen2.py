"""Qwen2 (`Qwen2ForCausalLM`): the architecture of Qwen2.5's dense models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.architectures.base import linear, normal, ones, zeros

if TYPE_CHECKING:
    import torch

    from engine.presets import Preset

__all__ = ["Qwen2Writer"]

BOS_TOKEN_ID = 151643
EOS_TOKEN_ID = 151645


class Qwen2Writer:
    """Writes configs and tensors named exactly as Qwen2.5's checkpoints are."""

    name = "qwen2"

    def config(self, preset: Preset) -> dict[str, Any]:
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "attention_dropout": 0.0,
            "bos_token_id": BOS_TOKEN_ID,
            "eos_token_id": EOS_TOKEN_ID,
            "hidden_act": "silu",
            "hidden_size": preset.hidden_size,
            **({"head_dim": preset.head_dim} if preset.explicit_head_dim else {}),
            "initializer_range": preset.init_std,
            "intermediate_size": preset.intermediate_size,
            "max_position_embeddings": preset.max_position_embeddings,
            "max_window_layers": preset.num_hidden_layers,
            "model_type": "qwen2",
            "num_attention_heads": preset.num_attention_heads,
            "num_hidden_layers": preset.num_hidden_layers,
            "num_key_value_heads": preset.num_key_value_heads,
            "rms_norm_eps": 1e-6,
            "rope_scaling": None,
            "rope_theta": 1000000.0,
            "sliding_window": None,
            "tie_word_embeddings": preset.tie_word_embeddings,
            "torch_dtype": "bfloat16",
            # The version Qwen2.5's published configs carry; transformers v5
            # reads a config without one as a possibly broken Mistral tokenizer.
            "transformers_version": "4.43.1",
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": preset.vocab_size,
        }

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config["num_key_value_heads"])
        head_dim = int(config.get("head_dim", hidden // heads))
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
        std = float(config.get("initializer_range", 0.02))

        out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": normal((vocab, hidden), generator, std)}
        for i in range(int(config["num_hidden_layers"])):
            p = f"model.layers.{i}"
            out[f"{p}.input_layernorm.weight"] = ones((hidden,))
            out[f"{p}.self_attn.q_proj.weight"] = linear(heads * head_dim, hidden, generator)
            out[f"{p}.self_attn.q_proj.bias"] = zeros((heads * head_dim,))
            out[f"{p}.self_attn.k_proj.weight"] = linear(kv_heads * head_dim, hidden, generator)
            out[f"{p}.self_attn.k_proj.bias"] = zeros((kv_heads * head_dim,))
            out[f"{p}.self_attn.v_proj.weight"] = linear(kv_heads * head_dim, hidden, generator)
            out[f"{p}.self_attn.v_proj.bias"] = zeros((kv_heads * head_dim,))
            out[f"{p}.self_attn.o_proj.weight"] = linear(hidden, heads * head_dim, generator)
            out[f"{p}.post_attention_layernorm.weight"] = ones((hidden,))
            out[f"{p}.mlp.gate_proj.weight"] = linear(inter, hidden, generator)
            out[f"{p}.mlp.up_proj.weight"] = linear(inter, hidden, generator)
            out[f"{p}.mlp.down_proj.weight"] = linear(hidden, inter, generator)
        out["model.norm.weight"] = ones((hidden,))
        if not config.get("tie_word_embeddings", False):
            out["lm_head.weight"] = normal((vocab, hidden), generator, std)
        return out
