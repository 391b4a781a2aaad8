"""The plain-PyTorch reference against a direct, whole-sequence computation of the same math.

The reference runs token by token (a recurrence for GLA, a growing key list
for the window); the direct form below computes every position at once from
closed forms: GLA as a masked sum over all earlier tokens with cumulative
gates, RoPE with complex rotations, the window as a band mask. Two
derivations, one answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.reference import GLAswaReference, load_weights


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w


def _lin(w: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    y = x @ w[name + ".weight"].T
    return y + w[name + ".bias"] if name + ".bias" in w else y


def _rope_complex(x: torch.Tensor, theta: float) -> torch.Tensor:
    """x [T, H, d]: pairs (j, j + d/2) rotate by position * theta^(-2j/d)."""
    seq_len, _, d = x.shape
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(
        torch.ones(seq_len, d // 2, dtype=torch.float64), torch.arange(seq_len)[:, None] * freqs
    )
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * rot[:, None, :]
    return torch.cat([z.real, z.imag], dim=-1)


def direct_logits(config: GLAswaConfig, w: dict[str, torch.Tensor], ids: list[int]) -> torch.Tensor:
    seq_len, heads, kv_heads, d = (
        len(ids),
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
    )
    group, eps = heads // kv_heads, config.norm_eps
    t = torch.arange(seq_len)
    causal = t[:, None] >= t[None, :]
    x = w["model.embeddings.weight"][ids]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        h = _rms(x, w[p + "attn_norm.weight"], eps)
        q = _lin(w, p + "attn.q_proj", h).view(seq_len, heads, d)
        k = _lin(w, p + "attn.k_proj", h).view(seq_len, kv_heads, d).repeat_interleave(group, 1)
        v = _lin(w, p + "attn.v_proj", h).view(seq_len, kv_heads, d).repeat_interleave(group, 1)
        if config.is_window_layer(i):
            q, k = _rope_complex(q, config.rope_theta), _rope_complex(k, config.rope_theta)
            band = causal & (t[:, None] - t[None, :] <= config.sliding_window)
            scores = torch.einsum("thd,shd->hts", q, k) * d**-0.5
            o = torch.einsum("hts,shd->thd", scores.masked_fill(~band, float("-inf")).softmax(-1), v)
        else:
            gk = _lin(w, p + "attn.gk_proj.1", _lin(w, p + "attn.gk_proj.0", h))
            g = (F.logsigmoid(gk) / 16).view(seq_len, kv_heads, d).repeat_interleave(group, 1)
            b = g.cumsum(0)  # o_t = sum_{s<=t} sum_j q_tj k_sj exp(b_tj - b_sj) v_s
            decay = (b[:, None] - b[None, :]).masked_fill(~causal[:, :, None, None], float("-inf")).exp()
            scores = torch.einsum("thj,shj,tshj->hts", F.relu(q) * d**-0.5, F.relu(k), decay)
            o = _rms(torch.einsum("hts,shd->thd", scores, v), w[p + "attn.g_norm.weight"], eps)
        x = x + _lin(w, p + "attn.o_proj", o.reshape(seq_len, -1))
        h = _rms(x, w[p + "mlp_norm.weight"], eps)
        x = x + _lin(
            w, p + "mlp.down_proj", F.silu(_lin(w, p + "mlp.gate_proj", h)) * _lin(w, p + "mlp.up_proj", h)
        )
    return _rms(x, w["model.norm.weight"], eps) @ w["lm_head.weight"].T


def test_reference_matches_direct_computation(gla_swa_checkpoint: Path) -> None:
    weights = {name: t.double() for name, t in load_weights(gla_swa_checkpoint).items()}
    reference = GLAswaReference.from_pretrained(gla_swa_checkpoint, dtype=torch.float64)
    ids = torch.randint(0, 151643, (80,), generator=torch.Generator().manual_seed(1)).tolist()
    assert len(ids) > 2 * reference.config.sliding_window
    torch.testing.assert_close(
        reference.prefill_logits(ids), direct_logits(reference.config, weights, ids), rtol=1e-9, atol=1e-9
    )


def test_window_reaches_exactly_sliding_window_tokens_back(gla_swa_checkpoint: Path) -> None:
    """Changing the window by one changes the logits once prompts outgrow it, and only then."""
    weights = {name: t.double() for name, t in load_weights(gla_swa_checkpoint).items()}
    config = GLAswaReference.from_pretrained(gla_swa_checkpoint).config
    window = config.sliding_window
    narrower = GLAswaConfig(**{**config.to_dict(), "sliding_window": window - 1})
    ids = torch.randint(0, 151643, (window + 8,), generator=torch.Generator().manual_seed(2)).tolist()
    a, b = direct_logits(config, weights, ids), direct_logits(narrower, weights, ids)
    torch.testing.assert_close(a[:window], b[:window], rtol=0, atol=0)
    assert (a[window:] - b[window:]).abs().max() > 1e-3


def test_generate_greedy_continues_prefill(reference: Any) -> None:
    prompt = [11, 22, 33, 44, 55]
    tokens = reference.generate_greedy(prompt, 6)
    logits = reference.prefill_logits(prompt + tokens[:-1])
    assert logits[len(prompt) - 1 :].argmax(-1).tolist() == tokens


def test_short_convolutions_are_refused(reference: Any) -> None:
    config = GLAswaConfig(**{**reference.config.to_dict(), "use_short_conv": True})
    with pytest.raises(NotImplementedError):
        GLAswaReference(config, reference.w)
