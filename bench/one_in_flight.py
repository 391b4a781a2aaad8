"""`python -m bench.one_in_flight`: the gateway's own cost at one request in flight, side by side.

The overhead table's c=1 cells hold about five requests each (1 s against a 20 ms upstream), too
few for a p50 within a fraction of a millisecond or a CPU-per-request column that is not mostly the
idle loop's timers. Here a fast fixed-latency upstream (first token after 1 ms, 0.2 ms a token, 16
tokens) makes the gateway's time the larger part, and blocks of `--block` requests go one at a time
to each target in turn (direct, the tree's gateway, each `--variant`), the order rotated each round,
JSON and then streamed chats. Reported per target: p50 and p99 (JSON end to end, streams to the
first event), added against direct over the same rounds, and the gateway's CPU per request (its
process tree's utime + stime over its own blocks). Base profile (`tantra`). Results in
`OUT/one_in_flight.{json,md,png}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import profiles, servers
from bench.procs import Service, usable_cpus
from bench.stats import percentile
from bench.upstream import Latency

MODEL = "bench-model"
KINDS = ("json", "stream")


@dataclass(frozen=True)
class OneInFlightPlan:
    rounds: int = 6
    block: int = 300
    warmup: int = 50
    latency: Latency = field(default_factory=lambda: Latency(ttft_s=0.001, itl_s=0.0002, default_tokens=16))


def measure(
    logs: Path, plan: OneInFlightPlan, variants: dict[str, Path], progress: Any = print
) -> dict[str, Any]:
    """Start the upstream and the gateways, then run the interleaved blocks."""
    cpus = usable_cpus()
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        upstream, upstream_url = servers.upstream(logs, plan.latency, MODEL, cpus)
        stack.enter_context(upstream)
        targets: dict[str, str] = {"direct": upstream_url}
        gateways: dict[str, Service] = {}
        env = profiles.settings_for(profiles.by_name("tantra"), None, logs / "state")
        for name, src in {"tantra": None, **variants}.items():
            gateway, url = servers.tantra(logs, name, upstream_url, env, cpus, gateway_src=src)
            stack.callback(gateway.stop)
            gateway.start()
            gateways[name], targets[name] = gateway, url
        for gateway in gateways.values():
            gateway.wait_ready()
        progress(f"bench: one in flight, targets: {', '.join(targets)}")
        return asyncio.run(_interleave(targets, gateways, plan, progress))


async def _interleave(
    targets: dict[str, str], gateways: dict[str, Service], plan: OneInFlightPlan, progress: Any
) -> dict[str, Any]:
    names = list(targets)
    seconds: dict[tuple[str, str], list[float]] = {(name, kind): [] for name in names for kind in KINDS}
    cpu: dict[tuple[str, str], float] = dict.fromkeys(seconds, 0.0)
    async with aiohttp.ClientSession() as session:
        for name in names:
            for kind in KINDS:
                await _block(session, targets[name], plan.warmup, kind == "stream")
        load_start = os.getloadavg()[0]
        for round_no in range(plan.rounds):
            shift = round_no % len(names)
            for kind in KINDS:
                for name in names[shift:] + names[:shift]:
                    gateway = gateways.get(name)
                    before = gateway.cpu_seconds() if gateway is not None else 0.0
                    seconds[(name, kind)] += await _block(
                        session, targets[name], plan.block, kind == "stream"
                    )
                    if gateway is not None:
                        cpu[(name, kind)] += gateway.cpu_seconds() - before
            progress(f"  round {round_no + 1}/{plan.rounds} done")
    cells = []
    for kind in KINDS:
        direct = seconds[("direct", kind)]
        for name in names:
            values = seconds[(name, kind)]
            cell: dict[str, Any] = {
                "target": name,
                "kind": kind,
                "requests": len(values),
                "p50_ms": percentile(values, 50) * 1000,
                "p99_ms": percentile(values, 99) * 1000,
            }
            if name != "direct":
                cell["added_p50_ms"] = (percentile(values, 50) - percentile(direct, 50)) * 1000
                cell["added_p99_ms"] = (percentile(values, 99) - percentile(direct, 99)) * 1000
                cell["cpu_us_per_request"] = cpu[(name, kind)] / len(values) * 1e6
            cells.append(cell)
    return {
        "plan": {"rounds": plan.rounds, "block": plan.block, "ttft_ms": plan.latency.ttft_s * 1000},
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "cells": cells,
    }


async def _block(session: aiohttp.ClientSession, url: str, count: int, stream: bool) -> list[float]:
    """`count` chats one after another; seconds to the whole answer (JSON) or first event (stream)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "stream": stream,
    }
    out = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {await response.text()}")
            if not stream:
                await response.read()
                out.append(time.perf_counter() - started)
                continue
            first: float | None = None
            async for chunk in response.content.iter_any():
                if first is None and b"data: {" in chunk:
                    first = time.perf_counter() - started
            out.append(first if first is not None else time.perf_counter() - started)
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    load = result["load_average"]
    lines = [
        f"One in flight, {result['plan']['rounds']} rounds of {result['plan']['block']} requests per "
        f"target and kind; load average {load['start']:.1f} at the start, {load['end']:.1f} at the end.",
        "",
        "| kind | target | p50 ms | p99 ms | added p50 ms | added p99 ms | gateway CPU µs/req |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in result["cells"]:
        added = (
            f"{cell['added_p50_ms']:.2f} | {cell['added_p99_ms']:.2f} | {cell['cpu_us_per_request']:,.0f}"
            if "added_p50_ms" in cell
            else "- | - | -"
        )
        lines.append(
            f"| {cell['kind']} | {cell['target']} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} | {added} |"
        )
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [cell for cell in result["cells"] if "added_p50_ms" in cell]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, key, title in (
        (axes[0], "added_p50_ms", "added p50 (ms)"),
        (axes[1], "cpu_us_per_request", "gateway CPU per request (µs)"),
    ):
        labels = [f"{cell['kind']}\n{cell['target']}" for cell in cells]
        axis.bar(labels, [cell[key] for cell in cells], color="tab:blue")
        axis.set_title(title)
    fig.suptitle("One request in flight against the fast fixed-latency upstream")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--rounds", type=int, default=OneInFlightPlan.rounds)
    parser.add_argument("--block", type=int, default=OneInFlightPlan.block)
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR")
    args = parser.parse_args()
    variants = {label: Path(src).resolve() for label, _, src in (v.partition("=") for v in args.variant)}
    plan = OneInFlightPlan(rounds=args.rounds, block=args.block)
    args.out.mkdir(parents=True, exist_ok=True)
    result = measure(args.out / "logs-one-in-flight", plan, variants)
    (args.out / "one_in_flight.json").write_text(json.dumps(result, indent=1))
    table = "\n".join(markdown(result)) + "\n"
    (args.out / "one_in_flight.md").write_text(table)
    plot(result, args.out / "one_in_flight.png")
    print(table)


if __name__ == "__main__":
    main()
