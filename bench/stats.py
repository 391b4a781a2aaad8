"""From cells to numbers: percentiles per target, then each target against the direct baseline.

Latencies are pooled over rounds before taking percentiles; throughput is compared
round by round (each round's ratio to the direct run of the same round) and the
median ratio kept, so a burst of noise from other tenants hits one round, not the result.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from bench.load import Cell

BASELINE = "direct"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Summary:
    """One target under one scenario, over all rounds; times in milliseconds."""

    target: str
    scenario: str
    stream: bool
    concurrency: int
    requests: int
    errors: int
    latency_p50: float
    latency_p99: float
    ttft_p50: float
    ttft_p99: float
    itl_p50: float
    itl_p99: float
    throughput: float
    cpu_us_per_request: float

    def as_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


@dataclass
class Overhead:
    """A target against direct under one scenario: milliseconds added and ratios."""

    target: str
    scenario: str
    stream: bool
    concurrency: int
    added_p50_ms: float
    added_p99_ms: float
    ratio_p50: float
    ratio_p99: float
    added_itl_p50_ms: float
    added_itl_p99_ms: float
    throughput_ratio: float
    cpu_us_per_request: float
    error_rate: float

    def as_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def summarise(cells: list[Cell]) -> list[Summary]:
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.target, cell.scenario.name)].append(cell)
    summaries = []
    for (target, name), group in groups.items():
        scenario = group[0].scenario
        ok = [shot for cell in group for shot in cell.ok]
        total = sum(len(cell.shots) for cell in group)
        latencies = [shot.latency * 1000 for shot in ok]
        ttfts = [shot.ttft * 1000 for shot in ok if shot.ttft is not None]
        itls = [gap * 1000 for shot in ok for gap in shot.itls]
        cpu = [cell.cpu_s for cell in group if cell.cpu_s is not None]
        summaries.append(
            Summary(
                target=target,
                scenario=name,
                stream=scenario.stream,
                concurrency=scenario.concurrency,
                requests=total,
                errors=total - len(ok),
                latency_p50=percentile(latencies, 50),
                latency_p99=percentile(latencies, 99),
                ttft_p50=percentile(ttfts, 50),
                ttft_p99=percentile(ttfts, 99),
                itl_p50=percentile(itls, 50),
                itl_p99=percentile(itls, 99),
                throughput=statistics.median(cell.throughput for cell in group),
                cpu_us_per_request=(sum(cpu) / len(ok) * 1e6) if cpu and ok else math.nan,
            )
        )
    return summaries


def overheads(cells: list[Cell], summaries: list[Summary], baseline: str = BASELINE) -> list[Overhead]:
    """Every non-baseline target against the baseline of the same scenario.

    For streams the latency columns are time to first token and the ITL columns
    inter-token latency; for JSON answers they are end-to-end latency.
    """
    by_key = {(s.target, s.scenario): s for s in summaries}
    direct_tput = {(c.scenario.name, c.round): c.throughput for c in cells if c.target == baseline}
    rows = []
    for summary in summaries:
        base = by_key.get((baseline, summary.scenario))
        if summary.target == baseline or base is None:
            continue
        if summary.stream:
            p50, p99, b50, b99 = summary.ttft_p50, summary.ttft_p99, base.ttft_p50, base.ttft_p99
        else:
            p50, p99, b50, b99 = summary.latency_p50, summary.latency_p99, base.latency_p50, base.latency_p99
        ratios = [
            cell.throughput / direct_tput[(cell.scenario.name, cell.round)]
            for cell in cells
            if cell.target == summary.target
            and cell.scenario.name == summary.scenario
            and direct_tput.get((cell.scenario.name, cell.round))
        ]
        rows.append(
            Overhead(
                target=summary.target,
                scenario=summary.scenario,
                stream=summary.stream,
                concurrency=summary.concurrency,
                added_p50_ms=p50 - b50,
                added_p99_ms=p99 - b99,
                ratio_p50=p50 / b50 if b50 else math.nan,
                ratio_p99=p99 / b99 if b99 else math.nan,
                added_itl_p50_ms=summary.itl_p50 - base.itl_p50,
                added_itl_p99_ms=summary.itl_p99 - base.itl_p99,
                throughput_ratio=statistics.median(ratios) if ratios else math.nan,
                cpu_us_per_request=summary.cpu_us_per_request,
                error_rate=summary.errors / summary.requests if summary.requests else math.nan,
            )
        )
    return rows


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: missing numbers become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
