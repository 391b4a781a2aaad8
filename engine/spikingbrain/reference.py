"""SpikingBrain's `GLAswaForCausalLM` in plain PyTorch: the test oracle.

Written for reading, not speed: one token at a time, float32 (or float64)
throughout, the published math spelled out. GLA layers run the naive
recurrence with keys, values and gates repeated over the GQA groups exactly
as the published code does; window layers keep every key and attend to the
token itself and the `sliding_window` tokens before it, as flash-attn's
`window_size=(sliding_window, 0)` does in the published code. No vLLM, no fla.
The only concession to long prompts: keys and values sit in one growing
tensor per layer, so a step reads its window as a slice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.weights import (
    check_tensors,
    expected_shapes,
    gate_layout,
    quantized_weight_names,
    with_weight_quantizers_applied,
)

__all__ = ["Continuation", "GLAswaReference", "load_weights"]


def load_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """Read every `*.safetensors` shard of a checkpoint directory."""
    shards = sorted(Path(model_dir).glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    weights: dict[str, torch.Tensor] = {}
    for shard in shards:
        weights.update(load_file(str(shard)))
    return weights


class _Rows:
    """Rows appended one at a time to a tensor that doubles when full; `upto(n)` is a view."""

    def __init__(self, row: torch.Tensor) -> None:
        self.data = row.new_empty((16, *row.shape))
        self.length = 0
        self.append(row)

    def append(self, row: torch.Tensor) -> None:
        if self.length == self.data.shape[0]:
            self.data = torch.cat([self.data, torch.empty_like(self.data)])
        self.data[self.length] = row
        self.length += 1

    def upto(self, n: int) -> torch.Tensor:
        return self.data[:n]

    def copy(self) -> _Rows:
        twin = _Rows.__new__(_Rows)
        twin.data, twin.length = self.data.clone(), self.length
        return twin


@dataclass
class Continuation:
    """Greedy tokens, each one's logit, and its margin over the runner-up."""

    tokens: list[int]
    logits: list[float]
    margins: list[float]


@dataclass
class _Cache:
    """Per-sequence memory: GLA states and the window layers' keys/values."""

    gla_state: dict[int, torch.Tensor] = field(default_factory=dict)
    keys: dict[int, _Rows] = field(default_factory=dict)
    values: dict[int, _Rows] = field(default_factory=dict)
    position: int = 0

    def copy(self) -> _Cache:
        """An independent cache (GLA states are replaced, never written in place)."""
        return replace(
            self,
            gla_state=dict(self.gla_state),
            keys={i: rows.copy() for i, rows in self.keys.items()},
            values={i: rows.copy() for i, rows in self.values.items()},
        )


class GLAswaReference:
    """Greedy generation and per-position logits from a `gla_swa` checkpoint."""

    def __init__(
        self, config: GLAswaConfig, weights: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
    ) -> None:
        if config.use_short_conv:
            raise NotImplementedError("gla_swa with use_short_conv=true (no published checkpoint uses it)")
        self.config = config
        self.dtype = dtype
        self.gate_layout = gate_layout(weights)
        check_tensors(expected_shapes(config, self.gate_layout), {n: t.shape for n, t in weights.items()})
        # W8ASpike weights go onto their int8 grid first, in their own dtype, as published.
        on_grid = with_weight_quantizers_applied(weights.items(), quantized_weight_names(weights))
        self.w = {name: t.to(dtype) for name, t in on_grid}
        if "lm_head.weight" not in self.w:
            # Tied checkpoints may omit the head.
            self.w["lm_head.weight"] = self.w["model.embeddings.weight"]
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        inv_freq = 1.0 / (
            config.rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim)
        )
        self._inv_freq = inv_freq

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, dtype: torch.dtype = torch.float32) -> GLAswaReference:
        config = GLAswaConfig(**json.loads((Path(model_dir) / "config.json").read_text()))
        return cls(config, load_weights(model_dir), dtype)

    # -- public API -------------------------------------------------------

    @torch.no_grad()
    def prefill_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Logits [len(ids), vocab] for every position of a fresh sequence."""
        cache = _Cache()
        hidden = torch.stack([self._step(token, cache) for token in ids])
        # One pass over the (large) head for all positions.
        return hidden @ self.w["lm_head.weight"].T

    @torch.no_grad()
    def generate_greedy(self, prompt_ids: Sequence[int], n: int) -> list[int]:
        """The `n` tokens greedy decoding appends to `prompt_ids` (no stop token)."""
        cache = _Cache()
        hidden = torch.empty(0)
        for token in prompt_ids:
            hidden = self._step(token, cache)
        return self._decode(hidden, cache, n)

    @torch.no_grad()
    def greedy_continuations(self, ids: Sequence[int], lengths: Sequence[int], n: int) -> list[Continuation]:
        """`generate_greedy(ids[:length], n)` for each length, reading the shared prefix once,
        with each chosen token's logit and its margin over the runner-up."""
        cache = _Cache()
        hidden = torch.empty(0)
        out: dict[int, Continuation] = {}
        wanted = set(lengths)
        for position, token in enumerate(ids[: max(lengths)], start=1):
            hidden = self._step(token, cache)
            if position in wanted:
                scored = Continuation([], [], [])
                self._decode(hidden, cache.copy(), n, scored)
                out[position] = scored
        return [out[length] for length in lengths]

    def _decode(
        self, hidden: torch.Tensor, cache: _Cache, n: int, scored: Continuation | None = None
    ) -> list[int]:
        out: list[int] = []
        for _ in range(n):
            logits = self.w["lm_head.weight"] @ hidden
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            if scored is not None:
                top2 = logits.topk(2).values
                scored.tokens.append(nxt)
                scored.logits.append(float(top2[0]))
                scored.margins.append(float(top2[0] - top2[1]))
            hidden = self._step(nxt, cache)
        return out

    # -- the model, one token at a time --------------------------------------

    def _step(self, token: int, cache: _Cache) -> torch.Tensor:
        """Feed one token; returns the final-norm hidden state (the head's input)."""
        x = self.w["model.embeddings.weight"][token]
        for i in range(self.config.num_hidden_layers):
            p = f"model.layers.{i}."
            h = self._rms_norm(x, self.w[p + "attn_norm.weight"])
            if self.config.is_window_layer(i):
                x = x + self._window_attention(i, h, cache)
            else:
                x = x + self._gla(i, h, cache)
            h = self._rms_norm(x, self.w[p + "mlp_norm.weight"])
            x = x + self._mlp(p + "mlp.", h)
        cache.position += 1
        return self._rms_norm(x, self.w["model.norm.weight"])

    def _linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        y = self.w[name + ".weight"] @ x
        bias = self.w.get(name + ".bias")
        return y if bias is None else y + bias

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.config.norm_eps) * weight

    def _mlp(self, p: str, x: torch.Tensor) -> torch.Tensor:
        return self._linear(
            p + "down_proj", F.silu(self._linear(p + "gate_proj", x)) * self._linear(p + "up_proj", x)
        )

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return x.reshape(n, self.head_dim)

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        """[kv_heads, d] -> [heads, d]: query head h reads kv head h // group."""
        return x.repeat_interleave(self.heads // self.kv_heads, dim=0)

    def _gla(self, i: int, x: torch.Tensor, cache: _Cache) -> torch.Tensor:
        p = f"model.layers.{i}.attn."
        q = self._heads(F.relu(self._linear(p + "q_proj", x)), self.heads)
        k = self._repeat_kv(self._heads(F.relu(self._linear(p + "k_proj", x)), self.kv_heads))
        v = self._repeat_kv(self._heads(self._linear(p + "v_proj", x), self.kv_heads))
        if self.gate_layout == "low_rank":
            gk = self._linear(p + "gk_proj.1", self._linear(p + "gk_proj.0", x))
        else:
            gk = self._linear(p + "gk_proj", x)
        g = self._repeat_kv(self._heads(F.logsigmoid(gk) / self.config.gate_logit_normalizer, self.kv_heads))

        state = cache.gla_state.get(i)
        if state is None:
            state = x.new_zeros(self.heads, self.head_dim, self.head_dim)
        # S <- diag(exp(g)) S + k^T v ;  o = (scale q) S, per head.
        state = state * g.exp().unsqueeze(-1) + k.unsqueeze(-1) * v.unsqueeze(-2)
        cache.gla_state[i] = state
        o = torch.einsum("hd,hde->he", q * self.scale, state)
        o = self._rms_norm(o, self.w[p + "g_norm.weight"])
        return self._linear(p + "o_proj", o.reshape(-1))

    def _rope(self, x: torch.Tensor, position: int) -> torch.Tensor:
        """Neox-style rotary embedding (rotate_half), as Qwen2 applies it."""
        angles = position * self._inv_freq
        cos = torch.cat([angles.cos(), angles.cos()]).to(x.dtype)
        sin = torch.cat([angles.sin(), angles.sin()]).to(x.dtype)
        half = self.head_dim // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _code_window_qkv(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a window layer does to its query and (before caching) keys and values: nothing
        here; W8ASpike codes them (`w8aspike_reference.py`)."""
        return q, k, v

    def _window_attention(self, i: int, x: torch.Tensor, cache: _Cache) -> torch.Tensor:
        p = f"model.layers.{i}.attn."
        q = self._rope(self._heads(self._linear(p + "q_proj", x), self.heads), cache.position)
        k = self._rope(self._heads(self._linear(p + "k_proj", x), self.kv_heads), cache.position)
        v = self._heads(self._linear(p + "v_proj", x), self.kv_heads)
        q, k, v = self._code_window_qkv(q, k, v)
        if i in cache.keys:
            cache.keys[i].append(k)
            cache.values[i].append(v)
        else:
            cache.keys[i], cache.values[i] = _Rows(k), _Rows(v)
        n = cache.keys[i].length
        # The token itself and the `sliding_window` tokens before it.
        first = max(0, n - 1 - self.config.sliding_window)
        ks = cache.keys[i].upto(n)[first:]  # [n, kv_heads, d]
        vs = cache.values[i].upto(n)[first:]
        # Query head h reads kv head h // group: the GQA repeat, without copying the window.
        grouped = q.reshape(self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        weights = torch.softmax(torch.einsum("kgd,nkd->kgn", grouped, ks) * self.scale, dim=-1)
        o = torch.einsum("kgn,nkd->kgd", weights, vs)
        return self._linear(p + "o_proj", o.reshape(-1))
