"""The automatic model choice rows: what choosing a model for `auto` adds to the base relay, from the
same interleaved run as the overhead table (profiles `tantra+auto` and `tantra+auto+classifier`
against `tantra`, same scenarios and rounds). Targets: under 2 ms p50 with rules only, under 10 ms
with the classifier (docs/orchestration.md)."""

from __future__ import annotations

from typing import Any

from bench.stats import Summary

BASE = "tantra"
TARGETS_MS = {"tantra+auto": 2.0, "tantra+auto+classifier": 10.0}


def rows(summaries: list[Summary]) -> list[dict[str, Any]]:
    """Per scenario and choosing profile: p50 (TTFT for streams) and CPU per request added to the base."""
    by_key = {(s.target, s.scenario): s for s in summaries}
    found = []
    for summary in summaries:
        base = by_key.get((BASE, summary.scenario))
        if summary.target not in TARGETS_MS or base is None:
            continue
        p50 = summary.ttft_p50 if summary.stream else summary.latency_p50
        base_p50 = base.ttft_p50 if base.stream else base.latency_p50
        found.append(
            {
                "target": summary.target,
                "scenario": summary.scenario,
                "added_p50_ms": p50 - base_p50,
                "ratio_p50": p50 / base_p50 if base_p50 else float("nan"),
                "added_cpu_us": summary.cpu_us_per_request - base.cpu_us_per_request,
                "throughput_ratio": summary.throughput / base.throughput if base.throughput else float("nan"),
                "target_ms": TARGETS_MS[summary.target],
            }
        )
    return found


def markdown(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "## Automatic model choice: added to the base relay",
        "",
        "`auto` chosen by rules (modality, context, features, budget), then also by a task classifier "
        "(one embeddings call per request, answered at once by the upstream), against profile `tantra` "
        "in the same rounds. The concurrency-1 rows are the latency the choice adds; at 16 and 64 "
        "in flight the gateway's one core is the bottleneck and its added CPU shows as queueing.",
        "",
        "| profile | scenario | added p50 ms | p50 ratio | added CPU µs/req | throughput | target p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in found:
        lines.append(
            f"| {row['target']} | {row['scenario']} | {row['added_p50_ms']:+.2f} | {row['ratio_p50']:.3f} | "
            f"{row['added_cpu_us']:+.0f} | {row['throughput_ratio']:.3f} | < {row['target_ms']:g} ms |"
        )
    return [*lines, ""]
