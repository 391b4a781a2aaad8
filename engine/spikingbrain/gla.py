"""Gated linear attention (GLA) in plain torch: a chunked prefill and a decode step.

GLA keeps, per key/value head, a state S (key dim x value dim) that decays
per key dimension and accumulates outer products:

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,        o_t = (scale * q_t) S_t

with `g_t = logsigmoid(gk_t) / 16 <= 0` and `scale = head_dim ** -0.5` (fla's
default, which SpikingBrain relies on). Keys, values and gates are shared by
the query heads of a GQA group, so the state is kept once per key/value head.

Everything is computed in float32 (float64 inputs stay float64), as fla's
kernels accumulate in float32 whatever the input dtype.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_CHUNK_SIZE", "gla_chunked", "gla_step"]

DEFAULT_CHUNK_SIZE = 64


def gla_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    state: torch.Tensor | None,
    scale: float,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one sequence through GLA a chunk at a time.

    Shapes: `q` [Hq, T, dk]; `k`, `g` [Hk, T, dk]; `v` [Hk, T, dv]; `state`
    [Hk, dk, dv] or None for a fresh sequence. Returns the output [Hq, T, dv]
    (float32) and the final state [Hk, dk, dv] (float32).

    Within a chunk the decay between positions t >= s is taken pairwise,
    exp(b_t - b_s) with b the running sum of gates, so no factor ever exceeds
    1: the usual exp(b_t) * exp(-b_s) factorisation overflows once the gates
    sum past about -88 in float32, which strongly closed gates reach quickly.
    """
    hq, seq_len, dk = q.shape
    hk, dv = v.shape[0], v.shape[-1]
    group = hq // hk
    dtype = _compute_dtype(q)
    qf = q.to(dtype).reshape(hk, group, seq_len, dk) * scale
    kf, vf, gf = k.to(dtype), v.to(dtype), g.to(dtype)
    s = q.new_zeros(hk, dk, dv, dtype=dtype) if state is None else state.to(dtype).clone()
    out = qf.new_empty(hk, group, seq_len, dv)
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()

    for start in range(0, seq_len, chunk_size):
        end = min(start + chunk_size, seq_len)
        n = end - start
        qc, kc, vc = qf[:, :, start:end], kf[:, start:end], vf[:, start:end]
        b = gf[:, start:end].cumsum(dim=1)  # [Hk, n, dk], non-increasing in n

        # Contribution of everything before the chunk, carried by the state.
        inter = (qc * b.exp().unsqueeze(1)) @ s.unsqueeze(1)

        # Within the chunk: A[t, s] = sum_d q_t[d] k_s[d] exp(b_t[d] - b_s[d]), s <= t.
        diff = b.unsqueeze(2) - b.unsqueeze(1)  # [Hk, t, s, dk]
        decay = diff.masked_fill(~causal[:n, :n, None], float("-inf")).exp()
        scores = torch.einsum("hgtd,htsd->hgts", qc, decay * kc.unsqueeze(1))
        out[:, :, start:end] = inter + scores @ vc.unsqueeze(1)

        last = b[:, -1:, :]  # [Hk, 1, dk]
        s = s * last.transpose(1, 2).exp() + (kc * (last - b).exp()).transpose(1, 2) @ vc

    return out.reshape(hq, seq_len, dv), s


def gla_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    state: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance a batch of sequences by one token each.

    Shapes: `q` [B, Hq, dk]; `k`, `g` [B, Hk, dk]; `v` [B, Hk, dv]; `state`
    [B, Hk, dk, dv]. Returns the output [B, Hq, dv] and the new state, both
    float32.
    """
    batch, hq, dk = q.shape
    hk, dv = v.shape[1], v.shape[-1]
    dtype = _compute_dtype(q)
    s = state.to(dtype) * g.to(dtype).exp().unsqueeze(-1) + k.to(dtype).unsqueeze(-1) * v.to(dtype).unsqueeze(
        -2
    )
    out = (q.to(dtype).reshape(batch, hk, hq // hk, dk) * scale) @ s
    return out.reshape(batch, hq, dv), s


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32
