"""The Long-VITA context bench (bench/long_vita_context.py) must not rot: one small variant (2k tokens)
served by a real vLLM engine on tiny-long-vita, 1, 4 and a context's fill of tiles timed and their
memory read from /proc, the table and plot written (no timing asserted; the real run, 16k and 128k,
is `python -m bench.long_vita_context`). The sizing and the 1M-token arithmetic are checked alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import long_vita_context as lvc
from bench.procs import usable_cpus


def test_tile_counts_go_by_fours_then_fill_the_context() -> None:
    assert lvc.tile_counts(2048, 4) == [1, 4, 7]
    assert lvc.tile_counts(16384, 16) == [1, 4, 16, 62]
    counts = lvc.tile_counts(131072, 16)
    assert counts[:-1] == [1, 4, 16, 64, 256] and counts[-1] == 505
    assert counts[-1] * (lvc.TILE_TOKENS + 1) + 16 + 64 <= 131072


def test_the_cache_is_sized_for_the_context_at_the_tiny_width() -> None:
    tiny = {"num_hidden_layers": 2, "num_key_value_heads": 1, "hidden_size": 128, "num_attention_heads": 2}
    per_token = lvc.kv_bytes_per_token(tiny, 2)
    assert per_token == 2 * 2 * 1 * 64 * 2  # K and V, 2 layers, 1 KV head of 64, bf16
    need = 131072 * per_token
    assert need <= lvc.kv_cache_gib(tiny, 131072, 2) * lvc.GiB < need * 1.25 + lvc.GiB / 64


def test_a_variant_declares_its_context_and_links_the_rest(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    config = {"max_position_embeddings": 32768, "sliding_window": 32768, "rope_theta": 1e6}
    (base / "config.json").write_text(json.dumps({**config, "rope_scaling": {"type": "yarn"}}))
    (base / "model.safetensors").write_bytes(b"weights")
    out = lvc.variant_checkpoint(base, tmp_path / "128K", 131072)
    written = json.loads((out / "config.json").read_text())
    assert written["max_position_embeddings"] == written["sliding_window"] == 131072
    assert written["rope_theta"] == 1e6 and written["rope_scaling"] is None
    assert (out / "model.safetensors").is_symlink()
    assert lvc.variant_checkpoint(base, tmp_path / "128K", 131072) == out  # a second time is fine


def test_the_million_token_arithmetic() -> None:
    bf16 = lvc.extrapolation(2)
    assert bf16["computed_not_measured"]
    assert bf16["kv_bytes_per_token"] == 192 * 1024  # 2 x 48 layers x 8 KV heads x 128 x 2 bytes
    assert bf16["kv_cache_bytes"] == 192 * lvc.GiB
    assert bf16["tensor_parallel"]["8"]["kv_cache_bytes_per_gpu"] == 24 * lvc.GiB
    assert lvc.extrapolation(1)["kv_cache_bytes"] == 96 * lvc.GiB


def test_the_process_group_memory_is_read_from_proc() -> None:
    pids = lvc.group_pids(os.getpgrp())
    assert os.getpid() in pids
    assert lvc.rss_bytes(pids) > 0 and lvc.pss_bytes(pids) > 0
    assert lvc.kv_cache_tokens_logged("INFO [x] CPU KV cache size: 163,840 tokens, Maximum") == 163840


def test_a_small_variant_is_measured_per_tile(tmp_path: Path) -> None:
    result = lvc.measure(tmp_path / "logs", usable_cpus(), lvc.ContextPlan.smoke(), progress=lambda _: None)
    (variant,) = result["variants"]
    assert variant["context"] == 2048 and variant["config"]["max_position_embeddings"] == 2048
    assert variant["kv_cache_tokens_logged"] >= 2048
    rows = variant["rows"]
    assert [row["tiles"] for row in rows] == [1, 4, 7]
    for row in rows:
        assert row["completion_tokens"] == 4 and row["ttft_s"] > 0 and row["decode_ms_per_token"] > 0
        assert row["rss_peak_bytes"] >= row["rss_before_bytes"] > 0 and row["pss_after_bytes"] > 0
    # The pixels reach the engine as tiles: each adds its 258 tokens and the template's newline.
    assert rows[1]["prompt_tokens"] - rows[0]["prompt_tokens"] == 3 * (lvc.TILE_TOKENS + 1)
    assert variant["per_tile"]["prompt_tokens"] == pytest.approx(lvc.TILE_TOKENS + 1)
    lvc.write(result, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "long_vita_context.json",
        "long_vita_context.md",
        "long_vita_context.png",
    }
    table = (tmp_path / "out" / "long_vita_context.md").read_text()
    assert "| 7 |" in table and "computed from its shapes, not measured" in table
