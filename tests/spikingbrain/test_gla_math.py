"""The chunked prefill and the decode step against the GLA recurrence, step by step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.spikingbrain.gla import gla_chunked, gla_step


def _naive(q, k, v, g, state, scale):  # type: ignore[no-untyped-def]
    """S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t; o_t = scale q_t S_t, kv heads shared by GQA groups."""
    hq, seq_len, _ = q.shape
    group = hq // k.shape[0]
    s = state.clone()
    outs = []
    for t in range(seq_len):
        s = s * g[:, t].exp().unsqueeze(-1) + k[:, t].unsqueeze(-1) * v[:, t].unsqueeze(-2)
        outs.append(torch.einsum("hd,hde->he", q[:, t] * scale, s.repeat_interleave(group, dim=0)))
    return torch.stack(outs, dim=1), s


def _inputs(seq_len: int, gate_spread: float, seed: int = 0):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    hq, hk, dk, dv = 4, 2, 16, 8

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    q, k, v = F.relu(rand(hq, seq_len, dk)), F.relu(rand(hk, seq_len, dk)), rand(hk, seq_len, dv)
    g = F.logsigmoid(rand(hk, seq_len, dk) * gate_spread) / 16
    return q, k, v, g, rand(hk, dk, dv), dk**-0.5


@pytest.mark.parametrize("seq_len", [1, 5, 64, 130])
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_chunked_matches_recurrence(seq_len: int, chunk_size: int) -> None:
    q, k, v, g, s0, scale = _inputs(seq_len, gate_spread=4.0)
    want_o, want_s = _naive(q, k, v, g, s0, scale)
    got_o, got_s = gla_chunked(q, k, v, g, s0, scale, chunk_size=chunk_size)
    torch.testing.assert_close(got_o, want_o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_s, want_s, rtol=1e-10, atol=1e-10)


def test_chunked_without_state_starts_from_zero() -> None:
    q, k, v, g, s0, scale = _inputs(40, gate_spread=4.0)
    want_o, _ = _naive(q, k, v, g, torch.zeros_like(s0), scale)
    got_o, _ = gla_chunked(q, k, v, g, None, scale)
    torch.testing.assert_close(got_o, want_o, rtol=1e-10, atol=1e-10)


def test_chunked_survives_closed_gates() -> None:
    """Gates summing far past float32's exp range within one chunk must not overflow."""
    q, k, v, g, s0, scale = _inputs(128, gate_spread=400.0)
    assert g.sum(dim=1).min() < -500
    want_o, want_s = _naive(q, k, v, g, s0, scale)
    got_o, got_s = gla_chunked(q.float(), k.float(), v.float(), g.float(), s0.float(), scale)
    assert torch.isfinite(got_o).all() and torch.isfinite(got_s).all()
    torch.testing.assert_close(got_o.double(), want_o, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_s.double(), want_s, rtol=1e-4, atol=1e-4)


def test_step_matches_recurrence_for_a_batch() -> None:
    seqs = [_inputs(1, gate_spread=4.0, seed=s) for s in range(3)]
    q = torch.stack([x[0][:, 0] for x in seqs])
    k = torch.stack([x[1][:, 0] for x in seqs])
    v = torch.stack([x[2][:, 0] for x in seqs])
    g = torch.stack([x[3][:, 0] for x in seqs])
    s0 = torch.stack([x[4] for x in seqs])
    got_o, got_s = gla_step(q, k, v, g, s0, seqs[0][5])
    for b, (qb, kb, vb, gb, sb, scale) in enumerate(seqs):
        want_o, want_s = _naive(qb, kb, vb, gb, sb, scale)
        torch.testing.assert_close(got_o[b], want_o[:, 0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got_s[b], want_s, rtol=1e-10, atol=1e-10)


def test_float32_and_bfloat16_inputs_compute_in_float32() -> None:
    q, k, v, g, s0, scale = _inputs(20, gate_spread=4.0)
    o, s = gla_chunked(q.bfloat16(), k.bfloat16(), v.bfloat16(), g.float(), s0.float(), scale)
    assert o.dtype == torch.float32 and s.dtype == torch.float32
