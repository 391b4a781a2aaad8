"""GLA over one engine step's requests on a GPU: a graph-safe decode and flash-linear-attention's prefill.

On the CPU the layer walks the step's requests one by one (`GLAswaLinearAttention.run_recurrence`),
reading their lengths and slots as Python numbers. On a GPU that loop cannot sit inside a CUDA
graph: each `.tolist()` waits for the device, which graph capture forbids, and a replayed graph
would reuse the numbers of the step it was captured in. vLLM captures whole-model graphs for
batches where every request advances by one token (the linear-attention backend declares
`UNIFORM_SINGLE_TOKEN_DECODE`) and splits the graph around `spikingbrain::gla_attention` for every
other batch (the plugin lists it with vLLM's attention ops), so:

- `decode_in_place` serves the all-decode batch with tensor operations only (no host sync, no data
  dependent shapes; checked by compiling it with `fullgraph=True`). The rows a captured batch is
  padded with (length 0, slot -1 or a stale one) read and write page 0, vLLM's null block, which
  no request ever owns.
- `fla_prefill` serves the prefills of a mixed batch, which run eagerly between the graph's pieces,
  with flash-linear-attention's varlen `chunk_gla` kernel when `fla-core` is installed (the `gpu`
  extra), and falls back to the per-request torch path otherwise (`TANTRA_GLA_KERNEL=torch` forces it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from engine.spikingbrain.gla import gla_step

__all__ = ["PrefillRow", "StepTensors", "decode_in_place", "describe_kernel", "fla_chunk_gla", "fla_prefill"]


class StepTensors(NamedTuple):
    """A step's GLA inputs and output, a row per token: `q`, `output` [T, Hq, d]; `k`, `v`, `g` [T, Hk, d]."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    g: torch.Tensor
    output: torch.Tensor


def decode_in_place(
    step: StepTensors, states: torch.Tensor, slots: torch.Tensor, seq_lens: torch.Tensor, scale: float
) -> None:
    """Advance the first `len(slots)` rows by one token each, reading and writing `states` in place.

    `states` is [pages, Hk, d, d]; `slots` and `seq_lens` [B]. A row whose sequence is one token
    long starts from a zero state (a one-token prompt), the others from their page.
    """
    q, k, v, g, output = step
    rows = slots.shape[0]
    lens = seq_lens[:rows]
    # A padding row (length 0, whatever stale slot its table row holds) goes to the null block.
    idx = torch.where(lens > 0, slots.to(torch.long).clamp(min=0), 0)
    old = states.index_select(0, idx)
    fresh = (lens <= 1).view(rows, 1, 1, 1)
    old = torch.where(fresh, torch.zeros_like(old), old)
    out, new = gla_step(q[:rows], k[:rows], v[:rows], g[:rows], old, scale)
    states.index_copy_(0, idx, new.to(states.dtype))
    output[:rows] = out.to(output.dtype)


@dataclass(frozen=True)
class PrefillRow:
    """One prefilling request of the step: its token rows, its state page, and whether it continues."""

    start: int
    end: int
    slot: int
    continues: bool


ChunkGla = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@functools.cache
def fla_chunk_gla() -> ChunkGla | None:
    """flash-linear-attention's `chunk_gla`, or None when it is not installed or turned off."""
    if os.environ.get("TANTRA_GLA_KERNEL", "auto") == "torch":
        return None
    try:
        from fla.ops.gla import chunk_gla
    except ImportError:
        return None
    kernel: ChunkGla = chunk_gla
    return kernel


def fla_prefill(
    step: StepTensors, states: torch.Tensor, rows: Sequence[PrefillRow], scale: float, kernel: ChunkGla
) -> None:
    """Run every prefilling request through one varlen `chunk_gla` call.

    fla's kernel wants as many key
    heads as query heads, so keys, values and gates are repeated over each GQA group (as the
    published model does before calling it); the group's final states are then equal, and one per
    key/value head is kept, which is the cache's layout.
    """
    q, k, v, g, output = step
    group = q.shape[1] // k.shape[1]
    token_rows = torch.cat([torch.arange(r.start, r.end, device=q.device) for r in rows])
    lengths = torch.tensor([0] + [r.end - r.start for r in rows], device=q.device)
    cu_seqlens = lengths.cumsum(0)
    slots = torch.tensor([r.slot for r in rows], device=q.device)
    keep = torch.tensor([r.continues for r in rows], device=q.device).view(-1, 1, 1, 1)
    initial = states.index_select(0, slots).float()
    initial = torch.where(keep, initial, torch.zeros_like(initial))

    def spread(x: torch.Tensor) -> torch.Tensor:
        return x[token_rows].repeat_interleave(group, dim=1).unsqueeze(0)

    out, final = kernel(
        q[token_rows].unsqueeze(0),
        spread(k),
        spread(v),
        spread(g),
        scale=scale,
        initial_state=initial.repeat_interleave(group, dim=1),
        output_final_state=True,
        cu_seqlens=cu_seqlens,
    )
    output[token_rows] = out[0].to(output.dtype)
    states.index_copy_(0, slots, final[:, ::group].to(states.dtype))


def describe_kernel(device: Any) -> str:
    """What the GLA prefill runs on for `device`, for logs and `make gpu-check`."""
    if torch.device(device).type != "cuda":
        return "torch (per request)"
    return "flash-linear-attention chunk_gla" if fla_chunk_gla() is not None else "torch (per request)"
