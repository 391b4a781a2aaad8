"""`gla_swa` as a trainable `torch.nn.Module`: the HF-side model LoRA training wraps with PEFT.

The reference (`reference.py`) is the oracle, one token at a time over a dict of tensors; PEFT
needs modules. This is the same math over whole sequences with autograd: every projection an
`nn.Linear` named as the checkpoint names it (so PEFT's adapter keys are the names vLLM's LoRA
loader expects), GLA layers through `gla.gla_chunked` (differentiable, float32), window layers as
causal softmax attention over the token and the `sliding_window` tokens before it. Sequences are
read from position 0 and padded on the right (what the trainer does): a causal model's outputs at
real tokens do not depend on the padding after them, so the attention mask is not needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.gla import gla_chunked
from engine.spikingbrain.reference import load_weights
from engine.spikingbrain.weights import (
    GateLayout,
    check_tensors,
    expected_shapes,
    gate_layout,
    quantized_weight_names,
    with_weight_quantizers_applied,
)

__all__ = ["GLAswaTorchForCausalLM", "lora_target_modules"]

_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_target_modules(layout: GateLayout) -> tuple[str, ...]:
    """PEFT `target_modules` for a `gla_swa` base: every decoder projection and the GLA gate's
    linear layers (`gk_proj.0`/`.1` low-rank, `gk_proj` full), all of which vLLM's LoRA wraps."""
    gate = ("gk_proj.0", "gk_proj.1") if layout == "low_rank" else ("gk_proj",)
    return _PROJECTIONS + gate


class _RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _MLP(nn.Module):
    def __init__(self, config: GLAswaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class _Attention(nn.Module):
    """q/k/v/o as both layer kinds have them; the kinds differ in what they do between."""

    def __init__(self, config: GLAswaConfig) -> None:
        super().__init__()
        dim = config.head_dim
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, dim
        self.scale = dim**-0.5
        self.q_proj = nn.Linear(config.hidden_size, self.heads * dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * dim, bias=True)
        self.o_proj = nn.Linear(self.heads * dim, config.hidden_size, bias=False)

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        """[B, T, heads * d] -> [B, heads, T, d]."""
        return x.unflatten(-1, (heads, self.head_dim)).transpose(1, 2)


class _WindowAttention(_Attention):
    def __init__(self, config: GLAswaConfig) -> None:
        super().__init__(config)
        self.window = config.sliding_window
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim
        self.inv_freq = 1.0 / (config.rope_theta**exponents)

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        """Neox-style rotary embedding (rotate_half) at positions 0..T-1, as the reference."""
        angles = torch.arange(x.shape[-2], dtype=torch.float64)[:, None] * self.inv_freq
        cos = torch.cat([angles.cos(), angles.cos()], -1).to(x.dtype)
        sin = torch.cat([angles.sin(), angles.sin()], -1).to(x.dtype)
        half = self.head_dim // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        group = self.heads // self.kv_heads
        q = self._rope(self._split(self.q_proj(x), self.heads))
        k = self._rope(self._split(self.k_proj(x), self.kv_heads)).repeat_interleave(group, dim=1)
        v = self._split(self.v_proj(x), self.kv_heads).repeat_interleave(group, dim=1)
        t = torch.arange(length)
        seen = (t[None, :] <= t[:, None]) & (t[None, :] >= t[:, None] - self.window)
        scores = (q @ k.transpose(-1, -2) * self.scale).masked_fill(~seen, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class _GLA(_Attention):
    def __init__(self, config: GLAswaConfig, layout: GateLayout) -> None:
        super().__init__(config)
        width = self.kv_heads * self.head_dim
        self.gk_proj: nn.Module
        if layout == "low_rank":
            rank = config.gate_low_rank_dim
            self.gk_proj = nn.Sequential(
                nn.Linear(config.hidden_size, rank, bias=False), nn.Linear(rank, width, bias=True)
            )
        else:
            self.gk_proj = nn.Linear(config.hidden_size, width, bias=True)
        self.normalizer = float(config.gate_logit_normalizer)
        self.g_norm = _RMSNorm(self.head_dim, config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self._split(F.relu(self.q_proj(x)), self.heads)
        k = self._split(F.relu(self.k_proj(x)), self.kv_heads)
        v = self._split(self.v_proj(x), self.kv_heads)
        g = self._split(F.logsigmoid(self.gk_proj(x)) / self.normalizer, self.kv_heads)
        # One sequence at a time: gla_chunked is the serving path's own math, differentiable.
        rows = [gla_chunked(q[b], k[b], v[b], g[b], None, self.scale)[0] for b in range(batch)]
        out = self.g_norm(torch.stack(rows).to(x.dtype))  # [B, heads, T, d]
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class _DecoderLayer(nn.Module):
    def __init__(self, config: GLAswaConfig, index: int, layout: GateLayout) -> None:
        super().__init__()
        self.attn_norm = _RMSNorm(config.hidden_size, config.norm_eps)
        self.attn = _WindowAttention(config) if config.is_window_layer(index) else _GLA(config, layout)
        self.mlp_norm = _RMSNorm(config.hidden_size, config.norm_eps)
        self.mlp = _MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class _Model(nn.Module):
    def __init__(self, config: GLAswaConfig, layout: GateLayout) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(_DecoderLayer(config, i, layout) for i in range(config.num_hidden_layers))
        self.norm = _RMSNorm(config.hidden_size, config.norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class GLAswaTorchForCausalLM(PreTrainedModel, GenerationMixin):
    """`model(input_ids=...)` -> `.logits` [B, T, vocab], float32 by default; PEFT wraps it (its
    causal-LM wrapper wants `GenerationMixin`; there is no KV cache: greedy decoding re-reads the
    sequence, which the tiny test models afford)."""

    config_class = GLAswaConfig
    base_model_prefix = "model"

    def __init__(self, config: GLAswaConfig, layout: GateLayout = "low_rank") -> None:
        super().__init__(config)
        self.gate_layout: GateLayout = layout
        self.model = _Model(config, layout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @classmethod
    def from_checkpoint(
        cls, model_dir: str | Path, dtype: torch.dtype = torch.float32
    ) -> GLAswaTorchForCausalLM:
        """Build from a checkpoint directory: names and shapes checked, W8ASpike weights put on their grid."""
        config = GLAswaConfig(**json.loads((Path(model_dir) / "config.json").read_text()))
        weights = load_weights(model_dir)
        layout = gate_layout(weights)
        check_tensors(expected_shapes(config, layout), {n: t.shape for n, t in weights.items()})
        state = dict(with_weight_quantizers_applied(weights.items(), quantized_weight_names(weights)))
        state.setdefault("lm_head.weight", state["model.embeddings.weight"])
        model = cls(config, layout)
        # nn.Sequential names the low-rank gate's layers 0 and 1, as the checkpoint does.
        model.load_state_dict(state, strict=True)
        # nn.Module.to: transformers types its own `to` for other arguments than a dtype.
        return nn.Module.to(model, dtype)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embeddings

    def forward(
        self, input_ids: torch.Tensor, logits_to_keep: int | torch.Tensor = 0, **_: Any
    ) -> CausalLMOutput:
        """`logits_to_keep` as transformers' causal LMs take it: the last n positions (0: all), or
        the positions' indices; training's loss needs the head at the answer's positions only."""
        hidden = self.model(input_ids)
        kept = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        return CausalLMOutput(logits=self.lm_head(hidden[:, kept]))
