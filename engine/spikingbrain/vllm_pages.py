"""Zeroing a window layer's newly begun KV page before vLLM's CPU attention kernel reads it.

vLLM's hybrid cache manager gives the window layers and the GLA layers one pool
of pages: a page that held a sequence's GLA state (float32) can be handed next
to a window layer, still carrying those bytes. Read as bfloat16, some of them
are NaN or Inf. vLLM's CPU attention kernel reads a sequence's last page a
whole tile at a time and gives the positions past the sequence's end a weight
of zero, but 0 x NaN is NaN: on the `small` preset in bfloat16 (head_dim 128)
every request after the first came out as NaN logits, i.e. token id 0 repeated.
Zeroing the page a sequence begins in this step (before its keys are written)
leaves only finite values past its end; full pages are never read past their
end, and a page begun in an earlier step was zeroed then. The cost is one page
per sequence every `block_size` tokens. GPU kernels never read past the end,
so only CPU caches are touched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.library import Library
from vllm.forward_context import get_forward_context
from vllm.utils.torch_utils import direct_register_custom_op

__all__ = ["begun_pages", "clear_begun_pages"]


def begun_pages(
    seq_lens: torch.Tensor, query_start_loc: torch.Tensor, block_table: torch.Tensor, block_size: int
) -> torch.Tensor:
    """The page ids of the partly filled last pages that the step's sequences begin in this step.

    `seq_lens` counts each sequence's tokens including this step's; `query_start_loc`
    (one more entry than there are requests) delimits this step's tokens per request.
    """
    num_reqs = query_start_loc.shape[0] - 1
    lens = seq_lens[:num_reqs].to(torch.int64)
    new = (query_start_loc[1:] - query_start_loc[:-1]).to(torch.int64)
    last = (lens - 1).clamp(min=0) // block_size
    begun = (lens % block_size != 0) & (last * block_size >= lens - new) & (new > 0)
    rows = begun.nonzero().flatten()
    return block_table[rows, last[rows]].to(torch.int64)


def clear_begun_pages(kv_cache: torch.Tensor, metadata: Any) -> None:
    """Zero the begun pages of a CPU KV cache laid out [pages, kv_heads, block_size, 2 x head_dim]."""
    if kv_cache.device.type != "cpu" or kv_cache.dim() != 4 or metadata is None:
        return
    pages = begun_pages(metadata.seq_lens, metadata.query_start_loc, metadata.block_table, kv_cache.shape[2])
    if pages.numel():
        kv_cache.index_fill_(0, pages, 0)


def _clear_window_pages(key: torch.Tensor, layer_name: str) -> None:
    context = get_forward_context()
    metadata: Any = context.attn_metadata
    if isinstance(metadata, dict):
        metadata = metadata.get(layer_name)
    kv_cache = context.no_compile_layers[layer_name].kv_cache
    clear_begun_pages(kv_cache, metadata)


def _clear_window_pages_fake(key: torch.Tensor, layer_name: str) -> None:
    return None


# `key` is declared mutated (it is not) so that a compiled graph keeps this op before the
# attention op's cache write of those keys.
_LIBRARY = Library("spikingbrain_pages", "FRAGMENT")
direct_register_custom_op(
    op_name="clear_window_pages",
    op_func=_clear_window_pages,
    mutates_args=["key"],
    fake_impl=_clear_window_pages_fake,
    target_lib=_LIBRARY,
)
