"""Random-weight `gla_swa` checkpoints, named and shaped as SpikingBrain-7B's.

Registered with `engine.architectures` as `gla_swa`: `config(preset)` gives
the `config.json` content and `tensors(config, generator)` every tensor under
its published name (see ENGINE_NOTES' checkpoint contract). Build one with
`engine.checkpoint.build_checkpoint(dir, "tiny", architecture="gla_swa")`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.architectures.base import linear, normal
from engine.presets import Preset, get_preset
from engine.spikingbrain.config import GATE_LOW_RANK_DIM, MODEL_TYPE

if TYPE_CHECKING:
    import torch

__all__ = ["PUBLISHED_SLIDING_WINDOW", "GlaSwaW8ASpikeWriter", "GlaSwaWriter", "window_for"]

QUANT_GROUP_SIZE = 128
"""W8ASpike's `w_group_size`: one weight scale per 128 input features."""

BOS_TOKEN_ID = 151643
EOS_TOKEN_ID = 151643
PUBLISHED_SLIDING_WINDOW = 4096

# Small windows make short test prompts cross the window edge, which is where
# the window layers' off-by-one mistakes would show.
_TEST_WINDOWS = {"tiny": 32}


def window_for(preset: Preset) -> int:
    """The sliding window a preset's checkpoint gets."""
    return _TEST_WINDOWS.get(preset.name, PUBLISHED_SLIDING_WINDOW)


class GlaSwaWriter:
    """Writes SpikingBrain's `GLAswaForCausalLM` layout: odd layers window attention, even layers GLA."""

    name = MODEL_TYPE

    def config(self, preset: Preset | str) -> dict[str, Any]:
        shape = get_preset(preset) if isinstance(preset, str) else preset
        layers = shape.num_hidden_layers
        return {
            "architectures": ["GLAswaForCausalLM"],
            "attention_dropout": 0.0,
            "attn_layers": list(range(1, layers, 2)),
            "attn_mode": "chunk",
            "bos_token_id": BOS_TOKEN_ID,
            "conv_size": 4,
            "elementwise_affine": True,
            "eos_token_id": EOS_TOKEN_ID,
            "fuse_cross_entropy": True,
            "hidden_act": "swish",
            "hidden_size": shape.hidden_size,
            # Written only when the preset sets it: the published config.json derives it.
            **({"head_dim": shape.head_dim} if shape.explicit_head_dim else {}),
            "initializer_range": shape.init_std,
            "intermediate_size": shape.intermediate_size,
            "max_position_embeddings": shape.max_position_embeddings,
            "model_type": MODEL_TYPE,
            "norm_eps": 1e-6,
            "num_attention_heads": shape.num_attention_heads,
            "num_hidden_layers": layers,
            "num_key_value_heads": shape.num_key_value_heads,
            "rope_theta": 1000000.0,
            "sliding_window": window_for(shape),
            # SpikingBrain keeps a separate head whatever the preset's habit.
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.45.0",
            "use_cache": True,
            "use_short_conv": False,
            "vocab_size": shape.vocab_size,
        }

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random weights. Norm weights and biases are drawn too, not left at 1 and 0,
        so a loader that skips or swaps one of them changes the output; gate
        biases are spread wide so GLA layers mix fast-forgetting and
        long-memory key dimensions."""
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config["num_key_value_heads"])
        head_dim = int(config.get("head_dim", hidden // heads))
        rank = int(config.get("gate_low_rank_dim", GATE_LOW_RANK_DIM))
        inter = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
        std = float(config.get("initializer_range", 0.02))
        window_layers = set(config.get("attn_layers", range(1, int(config["num_hidden_layers"]), 2)))

        def near_one(size: int) -> torch.Tensor:
            return normal((size,), generator, 0.1) + 1.0

        out: dict[str, torch.Tensor] = {"model.embeddings.weight": normal((vocab, hidden), generator, std)}
        for i in range(int(config["num_hidden_layers"])):
            p = f"model.layers.{i}"
            out[f"{p}.attn_norm.weight"] = near_one(hidden)
            out[f"{p}.attn.q_proj.weight"] = linear(heads * head_dim, hidden, generator)
            out[f"{p}.attn.q_proj.bias"] = normal((heads * head_dim,), generator, 0.1)
            out[f"{p}.attn.k_proj.weight"] = linear(kv_heads * head_dim, hidden, generator)
            out[f"{p}.attn.k_proj.bias"] = normal((kv_heads * head_dim,), generator, 0.1)
            out[f"{p}.attn.v_proj.weight"] = linear(kv_heads * head_dim, hidden, generator)
            out[f"{p}.attn.v_proj.bias"] = normal((kv_heads * head_dim,), generator, 0.1)
            out[f"{p}.attn.o_proj.weight"] = linear(hidden, heads * head_dim, generator)
            if i not in window_layers:
                out[f"{p}.attn.gk_proj.0.weight"] = linear(rank, hidden, generator)
                out[f"{p}.attn.gk_proj.1.weight"] = linear(kv_heads * head_dim, rank, generator)
                out[f"{p}.attn.gk_proj.1.bias"] = normal((kv_heads * head_dim,), generator, 3.0)
                out[f"{p}.attn.g_norm.weight"] = near_one(head_dim)
            out[f"{p}.mlp_norm.weight"] = near_one(hidden)
            out[f"{p}.mlp.gate_proj.weight"] = linear(inter, hidden, generator)
            out[f"{p}.mlp.up_proj.weight"] = linear(inter, hidden, generator)
            out[f"{p}.mlp.down_proj.weight"] = linear(hidden, inter, generator)
        out["model.norm.weight"] = near_one(hidden)
        out["lm_head.weight"] = normal((vocab, hidden), generator, std)
        return out


class GlaSwaW8ASpikeWriter(GlaSwaWriter):
    """The published W8ASpike layout: a full-rank gate and int8-grid scales for every projection.

    Same config as `GlaSwaWriter` (the published configs do not differ);
    `attn.gk_proj` is one biased hidden -> kv-width matrix, and each
    projection's `weight_quantizer.scales` is max|w| / 127 per group of 128
    inputs, so the grid really moves the weights.
    """

    name = "gla_swa_w8aspike"

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = super().tensors(config, generator)
        hidden = int(config["hidden_size"])
        head_dim = int(config.get("head_dim", hidden // int(config["num_attention_heads"])))
        gate_width = int(config["num_key_value_heads"]) * head_dim
        for i in range(int(config["num_hidden_layers"])):
            p = f"model.layers.{i}.attn.gk_proj"
            if out.pop(f"{p}.0.weight", None) is None:
                continue
            out.pop(f"{p}.1.weight")
            out[f"{p}.bias"] = out.pop(f"{p}.1.bias")
            out[f"{p}.weight"] = linear(gate_width, hidden, generator)
        for name in [n for n in out if n.endswith("_proj.weight") and ".layers." in n]:
            weight = out[name].float()
            groups = weight.reshape(weight.shape[0], -1, QUANT_GROUP_SIZE)
            scales = groups.abs().amax(dim=-1, keepdim=True) / 127
            out[name.removesuffix(".weight") + ".weight_quantizer.scales"] = scales.to(out[name].dtype)
        return out
