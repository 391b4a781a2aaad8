"""The one-in-flight bench (bench/one_in_flight.py) runs for a moment against real servers: the
fast upstream, the tree's gateway and the same tree as a variant; no timing is asserted."""

from __future__ import annotations

from pathlib import Path

from bench.one_in_flight import OneInFlightPlan, markdown, measure, plot

ROOT = Path(__file__).resolve().parents[2]


def test_one_in_flight_measures_every_target_and_kind(tmp_path: Path) -> None:
    plan = OneInFlightPlan(rounds=1, block=5, warmup=2)
    result = measure(tmp_path, plan, {"same": ROOT}, progress=lambda _: None)
    cells = {(cell["target"], cell["kind"]): cell for cell in result["cells"]}
    assert set(cells) == {(t, k) for t in ("direct", "tantra", "same") for k in ("json", "stream")}
    for (target, _), cell in cells.items():
        assert cell["requests"] == 5 and cell["p50_ms"] > 0
        if target != "direct":
            # The kernel counts a process's CPU in 10 ms ticks: five requests of about a millisecond
            # each can fall between two, so zero is a measurement here, not a failure.
            assert cell["cpu_us_per_request"] >= 0
    assert "| stream | same |" in "\n".join(markdown(result))
    plot(result, tmp_path / "one_in_flight.png")
    assert (tmp_path / "one_in_flight.png").stat().st_size > 0
