"""bench.core: cache theory, the report files, and a `--quick` smoke run of the real pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.context import ContextPoint
from bench.core.quant import SchemePoint
from bench.core.report import write_results
from bench.core.theory import cache_bytes
from engine.architectures import get_architecture
from engine.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]


def test_cache_theory_small_presets() -> None:
    qwen2 = get_architecture("qwen2").config(get_preset("small"))
    gla = get_architecture("gla_swa").config(get_preset("small"))
    # 12 layers x K and V x 2 kv heads x 128 x bf16 = 12 KiB per token.
    assert cache_bytes(qwen2, 1024) == 1024 * 12 * 1024
    assert cache_bytes(qwen2, 32768) == 32 * cache_bytes(qwen2, 1024)
    window = int(gla["sliding_window"])
    flat = cache_bytes(gla, window + 1)
    assert cache_bytes(gla, 16384) == cache_bytes(gla, 32768) == flat
    assert cache_bytes(gla, 1024) < flat


def test_report_files(tmp_path: Path) -> None:
    context = [
        ContextPoint("gla_swa", n, ms, [ms], 1.0, None if n == 4 else 10 * n, 9 * n)
        for n, ms in ((1, 10.0), (4, 11.0))
    ]
    quant = [
        SchemePoint(name, 100, tps, 2 * tps, 8, rss, rss // 2, 60.0, None if name == "bf16" else 0.9, 0.5)
        for name, tps, rss in (("bf16", 10.0, 1000), ("w8a8", 12.0, 800))
    ]
    written = write_results(tmp_path, context, quant, {"preset": "test"})
    assert {p.name for p in written} == {"results.json", "results.md", "context.png", "quantization.png"}
    payload = json.loads((tmp_path / "results.json").read_text())
    assert len(payload["context"]) == 2 and len(payload["quantization"]) == 2
    table = (tmp_path / "results.md").read_text()
    assert "| gla_swa | 4 | 11.0 | 1.10 |" in table
    assert "| w8a8 |" in table and "90.0%" in table


@pytest.mark.skipif(bool(os.environ.get("TANTRA_SKIP_VLLM")), reason="TANTRA_SKIP_VLLM is set")
def test_quick_run(tmp_path: Path) -> None:
    """One tiny engine, two short contexts: the whole measuring path end to end (about a minute)."""
    pytest.importorskip("vllm")
    cmd = [sys.executable, "-m", "bench.core", "--quick", "--parts", "context", "--archs", "gla_swa"]
    cmd += ["--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    points = json.loads((tmp_path / "results.json").read_text())["context"]
    assert [p["context"] for p in points] == [64, 512]
    assert all(p["decode_ms_per_token"] > 0 for p in points)
    assert (tmp_path / "context.png").stat().st_size > 0
