"""The window layers' begun KV pages are zeroed before vLLM's CPU attention kernel reads them
(engine/spikingbrain/vllm_pages.py): which pages count as begun, and that nothing else is touched."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from engine.spikingbrain.vllm_pages import begun_pages, clear_begun_pages

BLOCK = 4


def _metadata(seq_lens: list[int], new_tokens: list[int], tables: list[list[int]]) -> SimpleNamespace:
    starts = [0]
    for n in new_tokens:
        starts.append(starts[-1] + n)
    return SimpleNamespace(
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        query_start_loc=torch.tensor(starts, dtype=torch.int32),
        block_table=torch.tensor(tables, dtype=torch.int32),
    )


def test_a_partial_page_begun_in_this_step_is_named() -> None:
    md = _metadata(
        # prefill of 6 (pages 10, 11; 11 begun), decode into a fresh page (5th token: page 21),
        # decode inside a page begun earlier (6th token), a prefill filling whole pages only,
        # a chunk continuing a page begun by the previous chunk, a padded request.
        seq_lens=[6, 5, 6, 8, 7, 0],
        new_tokens=[6, 1, 1, 8, 2, 0],
        tables=[[10, 11], [20, 21], [30, 31], [40, 41], [50, 51], [0, 0]],
    )
    pages = begun_pages(md.seq_lens, md.query_start_loc, md.block_table, BLOCK)
    assert pages.tolist() == [11, 21]


def test_a_chunk_that_crosses_into_a_new_page_names_it() -> None:
    md = _metadata(seq_lens=[7], new_tokens=[3], tables=[[60, 61]])  # tokens 4..6: page 61 begins at 4
    assert begun_pages(md.seq_lens, md.query_start_loc, md.block_table, BLOCK).tolist() == [61]


def test_only_begun_pages_are_zeroed() -> None:
    cache = torch.full((64, 2, BLOCK, 8), float("nan"), dtype=torch.bfloat16)
    md = _metadata(seq_lens=[6, 5], new_tokens=[6, 1], tables=[[10, 11], [20, 21]])
    clear_begun_pages(cache, md)
    assert torch.equal(cache[11], torch.zeros_like(cache[11]))
    assert torch.equal(cache[21], torch.zeros_like(cache[21]))
    untouched = [i for i in range(64) if i not in (11, 21)]
    assert cache[untouched].isnan().all()


def test_no_metadata_or_a_non_cpu_layout_is_left_alone() -> None:
    cache = torch.full((4, 2, BLOCK, 8), float("nan"))
    clear_begun_pages(cache, None)
    clear_begun_pages(cache.view(4, 2, -1), _metadata([2], [2], [[1]]))
    assert cache.isnan().all()
