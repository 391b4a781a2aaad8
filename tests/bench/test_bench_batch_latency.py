"""The batch-latency row (bench/batch_latency.py) must not rot: one tiny round against the session's
real gateway and engine (an idle cell, then a batch started, measured beside and cancelled), and its
summary, table and plot from fixed numbers (no timing asserted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import batch_latency

PLAN = batch_latency.LatencyPlan(
    concurrency=2, chats=3, warmup_chats=1, max_tokens=4, batch_lines=40, batch_max_tokens=4, rounds=1
)


@pytest.mark.engine
def test_one_round_against_the_gateway(gateway_url: str, api_key: str, model: str) -> None:
    assert model == batch_latency.MODEL
    headers = {"authorization": f"Bearer {api_key}"}
    cells = asyncio.run(batch_latency.one_round(gateway_url, PLAN, batch_first=False, headers=headers))
    assert list(cells) == ["idle", "batch"]
    for cell in cells.values():
        assert cell["errors"] == 0 and len(cell["ttft_ms"]) == PLAN.chats
        assert all(value > 0 for value in cell["ttft_ms"])
    assert cells["batch"]["batch_lines_per_s"] >= 0
    result = batch_latency.summarise([cells], PLAN, priority=False)
    assert result["ratio"] is not None and result["ratio"] > 0


def test_summary_table_and_plot(tmp_path: Path) -> None:
    rounds = [
        {
            "idle": {"ttft_ms": [100.0, 110.0, 120.0], "errors": 0},
            "batch": {"ttft_ms": [110.0, 120.0, 400.0], "errors": 1, "batch_lines_per_s": 2.5},
        },
        {
            "batch": {"ttft_ms": [130.0], "errors": 0, "batch_lines_per_s": 3.5},
            "idle": {"ttft_ms": [90.0], "errors": 0},
        },
    ]
    result = batch_latency.summarise(rounds, PLAN, priority=True)
    idle, busy = result["targets"]["idle"], result["targets"]["batch"]
    assert (idle["chats"], busy["chats"], busy["errors"]) == (4, 4, 1)
    assert idle["ttft_p50_ms"] == 105.0 and busy["ttft_p50_ms"] == 125.0
    assert busy["batch_lines_per_s"] == 3.0 and "batch_lines_per_s" not in idle
    assert result["ratio"] == pytest.approx(125 / 105)
    table = "\n".join(batch_latency.markdown(result))
    assert "| batch | 4 | 1 | 125 |" in table and "1.19x without (target <= 1.2)" in table
    assert "priority (batch lines at priority 10)" in table
    assert batch_latency.markdown(None) == []
    batch_latency.plot(result, tmp_path / "batch_latency.png")
    assert (tmp_path / "batch_latency.png").stat().st_size > 1000
