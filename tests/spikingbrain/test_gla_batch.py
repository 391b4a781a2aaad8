"""The GPU paths of the GLA layer (engine/spikingbrain/gla_batch.py), checked on the CPU.

No GPU here: what is checked is the math against the per-request path the CPU serves with, that
the decode step traces into one graph with no host sync (what CUDA graph capture needs), that
padding rows touch only vLLM's null block, and that the GLA op is one vLLM splits graphs at.
flash-linear-attention's kernel itself needs a GPU; its calling contract is stood in for by the
torch recurrence, so what is tested is our layout around it (GQA spread, varlen, states).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from engine.spikingbrain.gla import gla_chunked, gla_step
from engine.spikingbrain.gla_batch import PrefillRow, StepTensors, decode_in_place, fla_prefill

HQ, HK, D, PAGES = 4, 2, 8, 7
SCALE = D**-0.5


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def _step(tokens: int, seed: int = 0) -> StepTensors:
    q = _rand(tokens, HQ, D, seed=seed).relu()
    k = _rand(tokens, HK, D, seed=seed + 1).relu()
    v = _rand(tokens, HK, D, seed=seed + 2)
    g = torch.nn.functional.logsigmoid(_rand(tokens, HK, D, seed=seed + 3)) / 16
    return StepTensors(q, k, v, g, torch.zeros(tokens, HQ, D))


def _decode_case() -> tuple[StepTensors, torch.Tensor, torch.Tensor, torch.Tensor]:
    # Rows: continues from page 3; a one-token prompt on page 5; padding (slot -1); continues from
    # page 2; padding whose table row still holds page 4 (a finished request's).
    slots = torch.tensor([3, 5, -1, 2, 4], dtype=torch.int32)
    seq_lens = torch.tensor([10, 1, 0, 7, 0], dtype=torch.int32)
    return _step(5), _rand(PAGES, HK, D, D, seed=9), slots, seq_lens


def test_the_graph_safe_decode_equals_the_per_request_path() -> None:
    step, states, slots, seq_lens = _decode_case()
    before = states.clone()
    decode_in_place(step, states, slots, seq_lens, SCALE)
    q, k, v, g, out = step
    for row, page in ((0, 3), (3, 2)):
        o, s = gla_step(q[row : row + 1], k[row : row + 1], v[row : row + 1], g[row : row + 1],
                        before[page : page + 1], SCALE)  # fmt: skip
        assert torch.equal(out[row], o[0])
        assert torch.equal(states[page], s[0])
    o, s = gla_chunked(q[1:2].transpose(0, 1), k[1:2].transpose(0, 1), v[1:2].transpose(0, 1),
                       g[1:2].transpose(0, 1), None, SCALE)  # fmt: skip
    torch.testing.assert_close(out[1], o.transpose(0, 1)[0])
    torch.testing.assert_close(states[5], s)
    # Padding wrote only the null block: pages 1, 4 and 6 are as they were.
    for page in (1, 4, 6):
        assert torch.equal(states[page], before[page])


def test_the_decode_step_traces_as_one_graph_without_host_syncs() -> None:
    """`fullgraph=True` fails on any graph break: `.tolist()`, `.item()`, data-dependent shapes."""
    torch._dynamo.reset()
    compiled = torch.compile(decode_in_place, fullgraph=True, backend="eager")
    step, states, slots, seq_lens = _decode_case()
    eager_step, eager_states = StepTensors(*(t.clone() for t in step)), states.clone()
    compiled(step, states, slots, seq_lens, SCALE)
    decode_in_place(eager_step, eager_states, slots, seq_lens, SCALE)
    assert torch.equal(step.output, eager_step.output)
    assert torch.equal(states, eager_states)


def _chunk_gla_stand_in(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, **kw: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """fla's `chunk_gla` contract (varlen [1, T, H, d], equal head counts, [N, H, d, d] states)."""
    cu, initial = kw["cu_seqlens"].tolist(), kw["initial_state"]
    assert kw["output_final_state"] and q.shape[2] == k.shape[2] == g.shape[2] == v.shape[2]
    outs, finals = [], []
    for n, (a, b) in enumerate(itertools.pairwise(cu)):
        qs, ks, vs, gs = (x[0, a:b].transpose(0, 1) for x in (q, k, v, g))
        o, s = gla_chunked(qs, ks, vs, gs, initial[n], kw["scale"])
        outs.append(o.transpose(0, 1))
        finals.append(s)
    return torch.cat(outs).unsqueeze(0), torch.stack(finals)


def test_the_fla_prefill_layout_equals_the_per_request_path() -> None:
    step = _step(12, seed=4)
    states = _rand(PAGES, HK, D, D, seed=5)
    before = states.clone()
    # Tokens 0-1 are two decodes served elsewhere; then a continuing prefill and a fresh one.
    rows = [PrefillRow(2, 7, slot=3, continues=True), PrefillRow(7, 12, slot=6, continues=False)]
    fla_prefill(step, states, rows, SCALE, _chunk_gla_stand_in)
    q, k, v, g, out = step
    for row in rows:
        span = slice(row.start, row.end)
        qs, ks, vs, gs = (x[span].transpose(0, 1) for x in (q, k, v, g))
        o, s = gla_chunked(qs, ks, vs, gs, before[row.slot] if row.continues else None, SCALE)
        torch.testing.assert_close(out[span], o.transpose(0, 1))
        torch.testing.assert_close(states[row.slot], s)
    assert not out[:2].any()
    for page in (0, 1, 2, 4, 5):
        assert torch.equal(states[page], before[page])


def test_vllm_splits_its_graphs_at_the_gla_op() -> None:
    from vllm.config.compilation import CompilationConfig, CompilationMode

    from engine.spikingbrain.vllm_plugin import GLA_OP, register

    register()
    register()  # twice is harmless
    config = CompilationConfig(mode=CompilationMode.VLLM_COMPILE)
    config.set_splitting_ops_for_v1("allgather_reducescatter")
    assert config.splitting_ops is not None
    assert config.splitting_ops.count(GLA_OP) == 1
    assert "vllm::unified_attention_with_output" in config.splitting_ops
