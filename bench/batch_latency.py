"""The batch-latency row of the benchmark (issue 18): time to first token of interactive streamed
chats through the gateway while a large batch runs on the same engine, against the same load with
no batch, side by side in one run (target: p50 with the batch within 1.2x of p50 without).

One vLLM engine on the tiny checkpoint (started the way `engine.launcher` starts it, with its
default `--scheduling-policy priority`) and one gateway in front of it with the Files and Batch APIs
(auth off, SQLite store, local blobs, the batch settings' defaults). Each round measures the
interactive load alone (`idle`), then submits a batch of `batch_lines` chat lines, waits until its
lines are flowing, measures the same load again (`batch`) and cancels the batch; rounds alternate
which cell comes first, so the machine's other load falls on both alike. The interactive load is a
closed loop of `concurrency` workers, each sending streamed chats back to back; TTFT is the time to
the first content delta, as the other parts count it.

    .venv/bin/python -m bench.batch_latency                  # this row alone; writes bench/results/
    .venv/bin/python -m bench.batch_latency --no-priority    # the engine on fcfs, the gateway sending none
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.procs import Service, free_port, usable_cpus
from bench.stats import percentile

MODEL = "tantra-tiny"
TARGET_RATIO = 1.2


@dataclass(frozen=True)
class LatencyPlan:
    concurrency: int = 4  # interactive chats in flight
    chats: int = 48  # interactive chats per cell (after the warm-up ones)
    warmup_chats: int = 4
    max_tokens: int = 16
    batch_lines: int = 2000  # more than a cell lasts: the batch runs throughout
    batch_max_tokens: int = 64
    rounds: int = 2


def chat_body(
    max_tokens: int, stream: bool, text: str = "Tell me a story about a lighthouse."
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "ignore_eos": True,  # every answer as long as asked: the same work in every cell
    }
    if stream:
        body["stream"] = True
    return body


async def _ttft(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]
) -> float | None:
    """Seconds to the first content delta of one streamed chat; None on an error."""
    began = time.perf_counter()
    async with session.post(url, data=payload, headers=headers) as response:
        if response.status != 200:
            await response.read()
            return None
        first: float | None = None
        async for raw in response.content:
            line = raw.strip()
            if first is None and line.startswith(b"data: {"):
                choices = orjson.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - began
        return first


async def interactive(
    base_url: str, plan: LatencyPlan, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Closed loop: `concurrency` workers sending streamed chats until `chats` were measured."""
    url = base_url.rstrip("/") + "/v1/chat/completions"
    payload = orjson.dumps(chat_body(plan.max_tokens, stream=True))
    sent = {"content-type": "application/json", **(headers or {})}
    ttfts: list[float] = []
    counted = {"started": 0, "errors": 0}
    total = plan.warmup_chats + plan.chats
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def worker() -> None:
            while counted["started"] < total:
                counted["started"] += 1
                warm = counted["started"] <= plan.warmup_chats
                seconds = await _ttft(session, url, payload, sent)
                if warm:
                    continue
                if seconds is None:
                    counted["errors"] += 1
                else:
                    ttfts.append(seconds * 1000)

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    return {"ttft_ms": ttfts, "errors": counted["errors"]}


async def start_batch(base_url: str, plan: LatencyPlan, headers: dict[str, str] | None = None) -> str:
    """Upload `batch_lines` chat lines, create the batch, and return once its lines are answered."""
    base = base_url.rstrip("/")
    lines = [
        {
            "custom_id": f"line-{index}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": chat_body(plan.batch_max_tokens, stream=False, text=f"Summarise document {index}."),
        }
        for index in range(plan.batch_lines)
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    async with aiohttp.ClientSession(headers=headers or {}) as session:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", io.BytesIO(data), filename="batch.jsonl", content_type="application/jsonl")
        async with session.post(base + "/v1/files", data=form) as response:
            file_id = (await _ok(response))["id"]
        create = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        async with session.post(base + "/v1/batches", json=create) as response:
            batch_id: str = (await _ok(response))["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            async with session.get(f"{base}/v1/batches/{batch_id}") as response:
                batch = await _ok(response)
            if batch["status"] != "validating" and batch["request_counts"]["completed"] > 0:
                return batch_id
            await asyncio.sleep(0.2)
    raise RuntimeError(f"batch {batch_id} answered no line within 300 s")


async def batch_progress(
    base_url: str, batch_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers=headers or {}) as session,
        session.get(f"{base_url.rstrip('/')}/v1/batches/{batch_id}") as response,
    ):
        return await _ok(response)


async def cancel_batch(base_url: str, batch_id: str, headers: dict[str, str] | None = None) -> None:
    base = base_url.rstrip("/")
    async with aiohttp.ClientSession(headers=headers or {}) as session:
        async with session.post(f"{base}/v1/batches/{batch_id}/cancel") as response:
            await _ok(response)
        for _ in range(600):
            async with session.get(f"{base}/v1/batches/{batch_id}") as response:
                if (await _ok(response))["status"] == "cancelled":
                    return
            await asyncio.sleep(0.2)


async def _ok(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    if response.status >= 400:
        raise RuntimeError(f"{response.method} {response.url}: {response.status} {body}")
    return body


async def one_round(
    base_url: str, plan: LatencyPlan, batch_first: bool, headers: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The two cells of a round: `idle` (no batch) and `batch` (a batch's lines flowing)."""
    cells: dict[str, dict[str, Any]] = {}
    for name in ("batch", "idle") if batch_first else ("idle", "batch"):
        if name == "idle":
            cells[name] = await interactive(base_url, plan, headers)
            continue
        batch_id = await start_batch(base_url, plan, headers)
        before = (await batch_progress(base_url, batch_id, headers))["request_counts"]["completed"]
        began = time.perf_counter()
        cells[name] = await interactive(base_url, plan, headers)
        seconds = time.perf_counter() - began
        after = (await batch_progress(base_url, batch_id, headers))["request_counts"]["completed"]
        # The batch's own progress during the cell: it still fills the engine's idle capacity.
        cells[name]["batch_lines_per_s"] = (after - before) / seconds if seconds else 0.0
        await cancel_batch(base_url, batch_id, headers)
    return cells


def summarise(rounds: list[dict[str, dict[str, Any]]], plan: LatencyPlan, priority: bool) -> dict[str, Any]:
    """p50/p99 TTFT of each cell kind over every round, and the batch cell's p50 over the idle's."""
    targets: dict[str, dict[str, Any]] = {}
    for name in ("idle", "batch"):
        cells = [cells[name] for cells in rounds if name in cells]
        values = [value for cell in cells for value in cell["ttft_ms"]]
        row: dict[str, Any] = {
            "chats": len(values),
            "errors": sum(cell["errors"] for cell in cells),
            "ttft_p50_ms": percentile(values, 50) if values else None,
            "ttft_p99_ms": percentile(values, 99) if values else None,
            "rounds_p50_ms": [percentile(cell["ttft_ms"], 50) if cell["ttft_ms"] else None for cell in cells],
        }
        rates = [cell["batch_lines_per_s"] for cell in cells if "batch_lines_per_s" in cell]
        if rates:
            row["batch_lines_per_s"] = sum(rates) / len(rates)
        targets[name] = row
    idle, busy = targets["idle"]["ttft_p50_ms"], targets["batch"]["ttft_p50_ms"]
    ratio = busy / idle if idle and busy is not None else None
    return {"plan": asdict(plan), "engine_priority": priority, "targets": targets, "ratio": ratio}


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md."""
    if not result:
        return []
    plan = result["plan"]
    policy = (
        "priority (batch lines at priority 10)" if result["engine_priority"] else "fcfs (no priority sent)"
    )
    lines = [
        f"## Interactive latency while a batch runs: {plan['concurrency']} streamed chats in flight, "
        f"engine scheduling {policy}",
        "",
        "| cell | chats | errors | TTFT p50 (ms) | TTFT p99 (ms) | batch lines/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["targets"].items():
        rate = row.get("batch_lines_per_s")
        lines.append(
            f"| {name} | {row['chats']} | {row['errors']} | {_ms(row['ttft_p50_ms'])} | "
            f"{_ms(row['ttft_p99_ms'])} | {'-' if rate is None else f'{rate:.2f}'} |"
        )
    ratio = result["ratio"]
    lines += [
        "",
        f"TTFT p50 with the batch running: {ratio:.2f}x without (target <= {TARGET_RATIO})." if ratio else "",
        "",
    ]
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def plot(result: dict[str, Any], path: Path) -> None:
    """TTFT p50 and p99 of both cells, and the target line at 1.2x the idle p50."""
    from bench.plots import plt

    targets = result["targets"]
    names = list(targets)
    fig, ax = plt.subplots(figsize=(6, 4))
    for offset, (key, label) in enumerate((("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99"))):
        values = [targets[name][key] or 0.0 for name in names]
        ax.bar(
            [i + (offset - 0.5) * 0.38 for i in range(len(names))],
            values,
            0.38,
            label=label,
            edgecolor="black",
            lw=0.4,
        )
    idle = targets["idle"]["ttft_p50_ms"]
    if idle:
        ax.axhline(idle * TARGET_RATIO, color="black", ls="--", lw=1)
        ax.text(-0.45, idle * TARGET_RATIO, f" {TARGET_RATIO}x idle p50", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), ["no batch" if name == "idle" else "batch running" for name in names])
    ax.set_ylabel("time to first token (ms)")
    ratio = result["ratio"]
    ax.set_title(f"Interactive TTFT, batch p50 / idle p50 = {ratio:.2f}x" if ratio else "Interactive TTFT")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure(
    checkpoint: Path,
    logs: Path,
    engine_cpus: list[int],
    gateway_cpus: list[int],
    plan: LatencyPlan,
    *,
    priority: bool = True,
    progress: Any = print,
) -> dict[str, Any]:
    """Start the engine and a gateway serving batches in front of it, and alternate the cells."""
    from engine.launcher import EngineConfig

    config = EngineConfig(
        model_dir=checkpoint,
        served_model_name=MODEL,
        port=free_port(),
        scheduling_policy="priority" if priority else "fcfs",
    )
    engine = Service(
        "batch-engine",
        config.command(),
        ready_url=config.base_url + "/health",
        log_path=logs / "batch-engine.log",
        env=config.environment(),
        cpus=engine_cpus,
        cwd=servers.ROOT,
        ready_timeout_s=900.0,
    )
    state = logs / "batch-state"
    state.mkdir(parents=True, exist_ok=True)
    settings = {
        "TANTRA_AUTH_ENABLED": "false",
        "TANTRA_DATABASE_URL": f"sqlite+aiosqlite:///{state / f'batch-{free_port()}.db'}",
        "TANTRA_BLOB_DIR": str(state / "blobs"),
        "TANTRA_JOBS_POLL_S": "0.2",
        # Batch lines at priority 10 on the priority scheduler; --no-priority: fcfs and none sent.
        "TANTRA_BATCH_ENGINE_PRIORITY": "10" if priority else "0",
    }
    rounds: list[dict[str, dict[str, Any]]] = []
    with contextlib.ExitStack() as stack:
        progress(f"bench: starting vLLM on the tiny checkpoint ({config.scheduling_policy} scheduling)")
        stack.enter_context(engine)
        gateway, gateway_url = servers.tantra(logs, "tantra-batches", config.base_url, settings, gateway_cpus)
        stack.enter_context(gateway)
        for index in range(plan.rounds):
            cells = asyncio.run(one_round(gateway_url, plan, batch_first=index % 2 == 1))
            rounds.append(cells)
            progress(
                f"bench: batch latency round {index + 1}: "
                + ", ".join(
                    f"{name} p50 {percentile(cell['ttft_ms'], 50):.0f} ms"
                    for name, cell in cells.items()
                    if cell["ttft_ms"]
                )
            )
    return summarise(rounds, plan, priority)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_latency", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=servers.ROOT / ".cache" / "checkpoints" / "tiny")
    parser.add_argument("--rounds", type=int, default=LatencyPlan.rounds)
    parser.add_argument("--chats", type=int, default=LatencyPlan.chats)
    parser.add_argument("--concurrency", type=int, default=LatencyPlan.concurrency)
    parser.add_argument("--no-priority", action="store_true", help="engine on fcfs, no priority sent")
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    from engine.checkpoint import ensure_checkpoint

    checkpoint = ensure_checkpoint(args.checkpoint)
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cpus = usable_cpus()
    plan = LatencyPlan(rounds=args.rounds, chats=args.chats, concurrency=args.concurrency)
    result = measure(checkpoint, logs, cpus, cpus, plan, priority=not args.no_priority)
    suffix = "" if not args.no_priority else "_fcfs"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"batch_latency{suffix}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"batch_latency{suffix}.md").write_text("\n".join(markdown(result)))
    plot(result, args.out / f"batch_latency{suffix}.png")
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
