"""The LoRA row of `make bench`: requests per second and time to first token of a LoRA model against
its base model on the same vLLM replica (issue 20).

One engine on the Qwen2-shaped `qwen2-tiny` checkpoint with vLLM's LoRA support on
(`--enable-lora`, one slot, rank 8), serving a rank-8 adapter in PEFT's format on every projection
the trainer adapts (`engine/finetune/train.py`). The adapter is built with PEFT, its weights
random rather than trained: what the row measures is the cost of serving an adapter (vLLM's extra
LoRA matmuls on every projection), which does not depend on what the weights learnt. The load is
a closed loop of `concurrency` workers sending streamed chats of `max_tokens` tokens (`ignore_eos`:
every answer as long as asked) straight to the engine, `model` the base's name or the adapter's.
The two targets alternate within each round, in a rotated order, so the machine's other load falls
on both alike.

    .venv/bin/python -m bench.lora          # this row alone; writes bench/results/lora.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

BASE = "qwen2-tiny"
ADAPTER = "qwen2-tiny-lora"
RANK = 8


@dataclass(frozen=True)
class LoraPlan:
    concurrency: int = 4
    max_tokens: int = 16
    rounds: int = 3
    requests: int = 24  # measured per cell, after the warm-up ones
    warmup_requests: int = 4


def build_adapter(base: Path, out: Path, rank: int = RANK, seed: int = 0) -> Path:
    """A LoRA adapter in PEFT's format on `base`, its A and B both random (PEFT's default leaves B
    at zero, an adapter that changes nothing), on the projections the trainer adapts for that base
    (Qwen2's, or gla_swa's with its GLA gate). Built once, then reused."""
    if (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists():
        return out
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.finetune.train import load_base

    torch.manual_seed(seed)
    model, projections = load_base(base)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=list(projections),
        task_type="CAUSAL_LM",
        init_lora_weights=False,
    )
    get_peft_model(model, config).save_pretrained(str(out))
    return out


def chat_body(model: str, max_tokens: int) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Tell me a story about a lighthouse."}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
        }
    )


async def _one(session: aiohttp.ClientSession, url: str, payload: bytes) -> float | None:
    """Seconds to the first content delta of one streamed chat, read to its end; None on an error."""
    began = time.perf_counter()
    async with session.post(url, data=payload, headers={"content-type": "application/json"}) as response:
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


async def cell(base_url: str, model: str, plan: LoraPlan) -> dict[str, Any]:
    """Closed loop: `concurrency` workers sending streamed chats until `requests` were measured
    (after `warmup_requests`); requests/s is the measured ones over the time from the first
    measured request's start to the last one's end. A fixed count, not a fixed window: on a slow
    shared CPU a request lasts seconds, and a window would drop those it cuts."""
    url = base_url.rstrip("/") + "/v1/chat/completions"
    payload = chat_body(model, plan.max_tokens)
    ttfts: list[float] = []
    counted = {"started": 0, "requests": 0, "errors": 0}
    span: list[float] = []
    total = plan.warmup_requests + plan.requests
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def worker() -> None:
            while counted["started"] < total:
                counted["started"] += 1
                warm = counted["started"] <= plan.warmup_requests
                began = time.perf_counter()
                seconds = await _one(session, url, payload)
                if warm:
                    continue
                span.extend((began, time.perf_counter()))
                counted["requests"] += 1
                if seconds is None:
                    counted["errors"] += 1
                else:
                    ttfts.append(seconds * 1000)

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    seconds = (max(span) - min(span)) if span else 0.0
    return {**counted, "seconds": seconds, "ttft_ms": ttfts}


def summarise(cells: dict[str, list[dict[str, Any]]], plan: LoraPlan) -> dict[str, Any]:
    """Requests/s and TTFT p50/p99 of each target over every round, and the LoRA model's share of
    the base's throughput and its TTFT p50 over the base's."""
    targets: dict[str, dict[str, Any]] = {}
    for name, runs in cells.items():
        seconds = sum(run["seconds"] for run in runs) or 1.0
        requests = sum(run["requests"] for run in runs)
        errors = sum(run["errors"] for run in runs)
        values = [value for run in runs for value in run["ttft_ms"]]
        targets[name] = {
            "requests": requests,
            "errors": errors,
            "requests_per_s": (requests - errors) / seconds,
            "ttft_p50_ms": percentile(values, 50) if values else None,
            "ttft_p99_ms": percentile(values, 99) if values else None,
            "rounds_requests_per_s": [_rate(run) for run in runs],
        }
    base, lora = targets.get("base"), targets.get("lora")
    throughput = ttft = None
    if base and lora:
        throughput = lora["requests_per_s"] / base["requests_per_s"] if base["requests_per_s"] else None
        if base["ttft_p50_ms"] and lora["ttft_p50_ms"] is not None:
            ttft = lora["ttft_p50_ms"] / base["ttft_p50_ms"]
    return {"plan": asdict(plan), "targets": targets, "throughput_ratio": throughput, "ttft_ratio": ttft}


def _rate(run: dict[str, Any]) -> float:
    return (run["requests"] - run["errors"]) / run["seconds"] if run["seconds"] else 0.0


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md."""
    if not result:
        return []
    plan = result["plan"]
    lines = [
        f"## LoRA: qwen2-tiny with a rank-{RANK} adapter against its base on one replica, "
        f"{plan['concurrency']} streamed chats in flight, {plan['max_tokens']} tokens each",
        "",
        "| model | requests | errors | requests/s | TTFT p50 (ms) | TTFT p99 (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["targets"].items():
        lines.append(
            f"| {name} | {row['requests']} | {row['errors']} | {row['requests_per_s']:.2f} | "
            f"{_ms(row['ttft_p50_ms'])} | {_ms(row['ttft_p99_ms'])} |"
        )
    throughput, ttft = result["throughput_ratio"], result["ttft_ratio"]
    if throughput is not None and ttft is not None:
        lines += ["", f"The LoRA model: {throughput:.2f}x the base's requests/s, TTFT p50 {ttft:.2f}x."]
    return [*lines, ""]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def plot(result: dict[str, Any], path: Path) -> None:
    """Requests/s and TTFT p50/p99 side by side, base against LoRA."""
    from bench.plots import plt

    targets = result["targets"]
    names = list(targets)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.bar(names, [targets[n]["requests_per_s"] for n in names], color=["#4d4d4d", "#1b7837"][: len(names)])
    left.set_ylabel("requests/s")
    left.set_title("throughput")
    for offset, (key, label) in enumerate((("ttft_p50_ms", "p50"), ("ttft_p99_ms", "p99"))):
        right.bar(
            [i + (offset - 0.5) * 0.38 for i in range(len(names))],
            [targets[n][key] or 0.0 for n in names],
            0.38,
            label=label,
            edgecolor="black",
            lw=0.4,
        )
    right.set_xticks(range(len(names)), names)
    right.set_ylabel("time to first token (ms)")
    right.set_title("TTFT")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle("qwen2-tiny: LoRA adapter vs base on one vLLM replica")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def engine_config(checkpoint: Path, adapter: Path) -> Any:
    from engine.launcher import EngineConfig

    return EngineConfig(
        model_dir=checkpoint,
        served_model_name=BASE,
        port=free_port(),
        max_model_len=1024,
        extra_args=(
            "--enable-lora",
            "--max-loras",
            "1",
            "--max-lora-rank",
            str(RANK),
            "--lora-modules",
            f"{ADAPTER}={adapter}",
        ),
    )


def rounds(base_url: str, plan: LoraPlan, progress: Any = print, base: str = BASE) -> dict[str, Any]:
    """The interleaved rounds against a running LoRA engine that serves `ADAPTER` and its base as
    `base` (the test suite's shared LoRA engine names its base otherwise)."""
    models = {"base": base, "lora": ADAPTER}
    cells: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for index in range(plan.rounds):
        order = list(models) if index % 2 == 0 else list(reversed(models))
        for name in order:
            result = asyncio.run(cell(base_url, models[name], plan))
            cells[name].append(result)
            rate = _rate(result)
            progress(f"bench: lora round {index + 1} {name}: {rate:.2f} requests/s")
    return summarise(cells, plan)


def measure(
    checkpoint: Path, logs: Path, engine_cpus: list[int], plan: LoraPlan, progress: Any = print
) -> dict[str, Any]:
    """Build the adapter, start the LoRA engine serving it, and alternate base and LoRA."""
    adapter = build_adapter(checkpoint, servers.ROOT / ".cache" / "bench" / "lora-adapter")
    config = engine_config(checkpoint, adapter)
    engine = Service(
        "lora-engine",
        config.command(),
        ready_url=config.base_url + "/health",
        log_path=logs / "lora-engine.log",
        env=config.environment(),
        cpus=engine_cpus,
        cwd=servers.ROOT,
        ready_timeout_s=900.0,
    )
    with contextlib.ExitStack() as stack:
        progress("bench: starting vLLM on qwen2-tiny with LoRA on")
        stack.enter_context(engine)
        return rounds(config.base_url, plan, progress)


def qwen2_checkpoint() -> Path:
    from engine.checkpoint import ensure_checkpoint

    return ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / "qwen2-tiny", "tiny", 0, "qwen2")


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "lora.json").write_text(json.dumps(result, indent=1))
    (out / "lora.md").write_text("\n".join(markdown(result)))
    plot(result, out / "lora.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lora", description=__doc__)
    parser.add_argument("--rounds", type=int, default=LoraPlan.rounds)
    parser.add_argument("--requests", type=int, default=LoraPlan.requests, help="measured per cell")
    parser.add_argument("--concurrency", type=int, default=LoraPlan.concurrency)
    parser.add_argument("--max-tokens", type=int, default=LoraPlan.max_tokens)
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    plan = LoraPlan(
        concurrency=args.concurrency, max_tokens=args.max_tokens, rounds=args.rounds, requests=args.requests
    )
    result = measure(qwen2_checkpoint(), logs, usable_cpus(), plan)
    write(result, args.out)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
