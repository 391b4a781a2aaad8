"""The worker-processes row (bench/workers.py) runs for a moment against real servers: a gateway
with one worker and one with two, beside the fixed-latency upstream; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

from bench.upstream import Latency
from bench.workers import WorkersPlan, markdown, measure


def test_workers_row_measures_each_count(tmp_path: Path) -> None:
    plan = WorkersPlan(
        counts=(1, 2),
        concurrency=4,
        tokens=4,
        rounds=1,
        duration_s=0.5,
        warmup_s=0.1,
        latency=Latency(ttft_s=0.005, itl_s=0.002, default_tokens=4),
    )
    result = measure(tmp_path, plan, progress=lambda _: None)
    rows = result["targets"]
    assert set(rows) == {"direct", "tantra-1-worker", "tantra-2-workers"}
    for name, row in rows.items():
        assert row["streams_per_s"] > 0 and row["errors"] == 0, name
    assert rows["tantra-2-workers"]["cpu_ms_per_stream"] > 0
    table = "\n".join(markdown(result))
    assert "tantra-2-workers" in table and "x one worker" in table
