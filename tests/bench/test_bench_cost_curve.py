"""The cost curve (bench/cost_curve.py) runs for a moment against real servers: the fixed-latency
upstream directly and a gateway as deployed, at 1 and 4 streams; no timing is asserted."""

from __future__ import annotations

import os
from pathlib import Path

from bench.cost_curve import CurvePlan, Sampler, markdown, measure, plot


def test_sampler_reads_rss_and_cpu_from_proc() -> None:
    sampler = Sampler(os.getpid())
    before = sampler.cpu_s()
    sum(i * i for i in range(300_000))  # some CPU to bill
    assert sampler.rss_kib() > 1000
    assert sampler.cpu_s() > before


def test_cost_curve_measures_memory_and_cpu_per_stream(tmp_path: Path) -> None:
    result = measure(tmp_path, CurvePlan.smoke(), progress=lambda _: None)
    rows = {(row["target"], row["streams"]): row for row in result["rows"]}
    assert set(rows) == {("direct", 1), ("tantra", 1), ("direct", 4), ("tantra", 4)}
    for key, row in rows.items():
        assert row["errors"] == 0 and row["tokens"] > 0, (key, row["first_error"])
        assert row["client_processes"] >= 1
    for n in (1, 4):
        gateway = rows[("tantra", n)]
        assert gateway["cpu_us_per_token"] is not None and gateway["cpu_us_per_token"] >= 0
        assert gateway["rss_kib_per_stream"] is not None and gateway["idle_rss_kib"] > 10_000
        assert gateway["throughput_ratio"] > 0 and gateway["added_itl_p50_ms"] is not None
        assert gateway["gateway_waited"] is not None and gateway["gateway_waited"] >= 0
    table = "\n".join(markdown(result))
    assert "RSS per stream KiB" in table and "| tantra | 4 |" in table
    plot(result, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000
