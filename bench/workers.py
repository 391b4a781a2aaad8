"""The worker-processes row of `make bench`: streamed throughput and gateway CPU per request with
TANTRA_WORKERS at 1, 2 and 4, side by side, 64 streams in flight on the fixed-latency upstream.

Method: one gateway per worker count (the base profile, relay only, each with the run's Redis,
which several workers require) and the upstream directly, in interleaved rounds with the order
rotated each round, as the overhead part runs. Each cell records the successful streams per second
and the CPU seconds of the gateway's whole process tree (supervisor and workers) per stream. The
gateways, the upstream and the load client share the machine's cores: on a 2-core machine more
workers cannot add cores, so the row mostly shows CPU per request and what the extra processes
cost; on a larger host the ratio to direct is the number to read.

    .venv/bin/python -m bench.workers                   # this row alone (about 3 minutes)
    .venv/bin/python -m bench.workers --workers 1,2 --rounds 1 --duration 1   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profiles, servers
from bench.load import Cell, Scenario, Target, run_cell
from bench.procs import Service, usable_cpus
from bench.upstream import Latency

MODEL = "bench-model"
COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class WorkersPlan:
    counts: tuple[int, ...] = COUNTS
    concurrency: int = 64
    tokens: int = 16
    rounds: int = 3
    duration_s: float = 8.0
    warmup_s: float = 1.0
    latency: Latency = field(default_factory=lambda: Latency(ttft_s=0.02, itl_s=0.005, default_tokens=16))


def measure(logs: Path, plan: WorkersPlan, progress: Any = print) -> dict[str, Any]:
    """Start the upstream, Redis and one gateway per worker count; interleave them with direct."""
    cpus = usable_cpus()
    scenario = Scenario(f"stream-c{plan.concurrency}", True, plan.concurrency, tokens=plan.tokens)
    cells: dict[str, list[Cell]] = {}
    with contextlib.ExitStack() as stack:
        upstream, upstream_url = servers.upstream(logs, plan.latency, MODEL, cpus)
        stack.enter_context(upstream)
        started = servers.redis(logs, cpus)
        if started is None:
            raise SystemExit("bench.workers: several workers need redis-server, which is not installed")
        redis, redis_url = started
        stack.enter_context(redis)
        targets = {"direct": Target("direct", upstream_url, MODEL)}
        billed: dict[str, Service] = {}
        for count in plan.counts:
            name = f"tantra-{count}-worker{'s' if count > 1 else ''}"
            env = {
                **profiles.settings_for(profiles.by_name("tantra"), redis_url, logs / "state"),
                "TANTRA_WORKERS": str(count),
            }
            gateway, url = servers.tantra(logs, name, upstream_url, env, cpus)
            # Started together, then waited for: each gateway's start is mostly imports.
            stack.callback(gateway.stop)
            gateway.start()
            billed[name] = gateway
            targets[name] = Target(name, url, MODEL)
        for gateway in billed.values():
            gateway.wait_ready()
        progress(f"bench: workers row, targets: {', '.join(targets)}")
        asyncio.run(_interleave(cells, targets, billed, scenario, plan, progress))
    return summarise(cells, plan)


async def _interleave(
    cells: dict[str, list[Cell]],
    targets: dict[str, Target],
    billed: dict[str, Service],
    scenario: Scenario,
    plan: WorkersPlan,
    progress: Any,
) -> None:
    names = list(targets)
    for name in names:  # first requests pay for pools and imports: not measured
        await run_cell(targets[name], scenario, duration_s=max(plan.warmup_s, 0.2), warmup_s=0.0)
    for index in range(plan.rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            server = billed.get(name)
            before = server.cpu_seconds() if server is not None else None
            cell = await run_cell(targets[name], scenario, duration_s=plan.duration_s, warmup_s=plan.warmup_s)
            if server is not None and before is not None:
                cell.cpu_s = server.cpu_seconds() - before
            cells.setdefault(name, []).append(cell)
            progress(
                f"  round {index + 1}/{plan.rounds} {name:<18} {cell.throughput:8.1f} streams/s "
                f"{cell.error_rate:6.1%} errors"
            )


def summarise(cells: dict[str, list[Cell]], plan: WorkersPlan) -> dict[str, Any]:
    """Per target: streams per second over every round, the share of direct's, CPU ms per stream."""
    rows: dict[str, dict[str, Any]] = {}
    for name, runs in cells.items():
        seconds = sum(cell.finished - cell.started for cell in runs) or 1.0
        ok = sum(len(cell.ok) for cell in runs)
        cpu = [cell.cpu_s for cell in runs if cell.cpu_s is not None]
        rows[name] = {
            "streams_per_s": ok / seconds,
            "errors": sum(len(cell.shots) - len(cell.ok) for cell in runs),
            "cpu_ms_per_stream": 1000 * sum(cpu) / ok if cpu and ok else None,
            "rounds": [cell.throughput for cell in runs],
        }
    direct = rows.get("direct", {}).get("streams_per_s")
    single = next((row["streams_per_s"] for name, row in rows.items() if name.startswith("tantra-1-")), None)
    for row in rows.values():
        row["ratio_direct"] = row["streams_per_s"] / direct if direct else None
        row["ratio_one_worker"] = row["streams_per_s"] / single if single else None
    return {
        "concurrency": plan.concurrency,
        "tokens": plan.tokens,
        "cores": len(usable_cpus()),
        "targets": rows,
    }


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md."""
    if not result:
        return []
    lines = [
        f"## Worker processes: {result['concurrency']} streams in flight, {result['tokens']} tokens each, "
        f"{result['cores']} cores",
        "",
        "| target | streams/s | x direct | x one worker | gateway CPU ms per stream | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["targets"].items():
        lines.append(
            f"| {name} | {row['streams_per_s']:.1f} | {_ratio(row['ratio_direct'])} | "
            f"{_ratio(row['ratio_one_worker'])} | {_ms(row['cpu_ms_per_stream'])} | {row['errors']} |"
        )
    return [*lines, ""]


def _ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument(
        "--workers", default=",".join(map(str, COUNTS)), help="worker counts, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=WorkersPlan.rounds)
    parser.add_argument("--duration", type=float, default=WorkersPlan.duration_s, help="seconds per cell")
    parser.add_argument("--concurrency", type=int, default=WorkersPlan.concurrency, help="streams in flight")
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    plan = WorkersPlan(
        counts=tuple(int(count) for count in args.workers.split(",")),
        concurrency=args.concurrency,
        rounds=args.rounds,
        duration_s=args.duration,
        warmup_s=min(WorkersPlan.warmup_s, args.duration / 2),
    )
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = measure(logs, plan)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "workers.json").write_text(json.dumps(result, indent=1))
    (args.out / "workers.md").write_text("\n".join(markdown(result)))
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
