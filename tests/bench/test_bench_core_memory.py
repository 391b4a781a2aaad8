"""bench.core's memory breakdown: smaps parsed by kind, the KV cache found by its size, the table's
KV-less columns (no engine: a synthetic smaps text and this test's own process)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from bench.core.memory import group_memory, parse_smaps, without_kv_cache
from bench.core.quant import SchemePoint
from bench.core.report import quant_table

MiB = 1 << 20
_SMAPS = """\
55d0c0000000-55d0c8000000 rw-p 00000000 00:00 0                          [heap]
Size:             131072 kB
Rss:               40960 kB
Pss:               40960 kB
Anonymous:         40960 kB
7f0000000000-7f003ffc0000 rw-p 00000000 00:00 0
Size:            1048320 kB
Rss:             1048320 kB
Pss:             1048320 kB
Anonymous:       1048320 kB
7f1000000000-7f1000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1024 kB
Pss:                1024 kB
Anonymous:          1024 kB
7f2000000000-7f2010000000 r--p 00000000 fd:01 1234                       /ckpt/model.safetensors
Size:             262144 kB
Rss:                2048 kB
Pss:                2048 kB
Anonymous:             0 kB
7f3000000000-7f3000800000 r-xp 00000000 fd:01 99                         /venv/torch/lib/libtorch_cpu.so
Size:               8192 kB
Rss:                8192 kB
Pss:                4096 kB
Anonymous:             0 kB
"""


def test_smaps_is_split_by_kind_and_the_kv_cache_found_by_its_size() -> None:
    sums = parse_smaps(_SMAPS, kv_cache_bytes=1 << 30)
    assert sums["rss"] == (40960 + 1048320 + 1024 + 2048 + 8192) * 1024
    assert sums["pss"] == sums["rss"] - 4096 * 1024
    assert sums["anonymous"] == (40960 + 1048320 + 1024) * 1024
    assert (sums["heap"], sums["kv_cache"]) == (40 * MiB, 1023.75 * MiB)
    assert (sums["safetensors"], sums["libraries"], sums["other_files"]) == (2 * MiB, 8 * MiB, 0)
    assert parse_smaps(_SMAPS)["kv_cache"] == 0  # no size given: nothing is called the cache


def test_this_process_group_is_measured() -> None:
    mine = [p for p in group_memory(os.getpgid(0)) if p.pid == os.getpid()]
    assert len(mine) == 1 and mine[0].rss > 0 and mine[0].libraries > 0
    assert without_kv_cache(mine) == mine[0].rss
    assert Path(f"/proc/{os.getpid()}/smaps").exists()


def test_the_table_shows_rss_less_the_kv_cache_and_its_ratio() -> None:
    bf16 = SchemePoint("bf16", 100, 10.0, 20.0, 8, 5000 * MiB, 2800 * MiB, 60.0, None, None)
    w8a8 = replace(bf16, scheme="w8a8", rss_bytes=4000 * MiB)
    old = quant_table([bf16, w8a8])  # results from before the breakdown: dashes, no error
    assert "| 2800 | - | - |" in old
    measured = [
        replace(bf16, rss_without_kv_bytes=4000 * MiB),
        replace(w8a8, rss_without_kv_bytes=3000 * MiB),
    ]
    table = quant_table(measured)
    assert "| 4000 | 1.00 |" in table and "| 3000 | 0.75 |" in table
