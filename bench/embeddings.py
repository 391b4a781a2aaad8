"""The embeddings row of `make bench`: input tokens per second through the gateway against vLLM
directly, side by side, with 16 requests in flight (target: at least 0.95x).

The engine is all-MiniLM-L6-v2 on vLLM's pooling runner (`--preset minilm`, float32), started the
way `engine.launcher` starts it; the gateway is the base profile (`tantra`: relay only) in front of
it. Each request embeds a batch of texts the way the OpenAI SDK asks by default (base64); tokens are
the engine's own `usage.prompt_tokens`. Targets alternate within each round, as the other parts do,
so the machine's other load falls on both alike.

    .venv/bin/python -m bench.embeddings --checkpoint .cache/checkpoints/minilm   # this row alone
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import profiles, servers
from bench.procs import Service, free_port

MODEL = "all-minilm-l6-v2"
TARGET_RATIO = 0.95
_SENTENCE = "The gateway relays each embedding request to the engine and its answer back. "


@dataclass(frozen=True)
class EmbeddingPlan:
    concurrency: int = 16
    batch: int = 8
    rounds: int = 3
    duration_s: float = 6.0
    warmup_s: float = 1.0
    # The window also holds at least this many answers per worker: at 16 in flight one request
    # can take seconds on two cores, and a window of a few answers counts waves, not throughput.
    answers_per_worker: int = 3


def body(batch: int) -> bytes:
    texts = [f"{index}: {_SENTENCE * 3}" for index in range(batch)]  # about 50 tokens each
    return orjson.dumps({"model": MODEL, "input": texts, "encoding_format": "base64"})


class _Window:
    """Answers counted by when they arrive: the window opens once the warm-up has passed and every
    worker has had one answer (the first, synchronised wave is left out), and closes at the first
    answer after both its duration and its answer count are reached. Tokens of answers inside it over
    its length is the throughput, whatever the time one request takes."""

    def __init__(self, plan: EmbeddingPlan) -> None:
        self._plan = plan
        self._began = time.perf_counter()
        self._answers = 0
        self.opened: float | None = None
        self.closed: float | None = None
        self.counted = {"requests": 0, "errors": 0, "tokens": 0}

    def answer(self, status: int, raw: bytes) -> None:
        now = time.perf_counter()
        self._answers += 1
        if self.closed is not None:
            return
        if self.opened is None:
            warm = now - self._began >= self._plan.warmup_s
            if warm and self._answers >= self._plan.concurrency:
                self.opened = now
            return
        self.counted["requests"] += 1
        if status != 200:
            self.counted["errors"] += 1
        else:
            self.counted["tokens"] += int(orjson.loads(raw)["usage"]["prompt_tokens"])
        enough = self.counted["requests"] >= self._plan.answers_per_worker * self._plan.concurrency
        if enough and now - self.opened >= self._plan.duration_s:
            self.closed = now

    @property
    def seconds(self) -> float:
        assert self.opened is not None and self.closed is not None
        return self.closed - self.opened


async def cell(base_url: str, plan: EmbeddingPlan, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Closed loop: `concurrency` workers posting back to back until the window closes."""
    url = base_url.rstrip("/") + "/v1/embeddings"
    payload = body(plan.batch)
    sent = {"content-type": "application/json", **(headers or {})}
    window = _Window(plan)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=300)
    ) as session:

        async def worker() -> None:
            while window.closed is None:
                async with session.post(url, data=payload, headers=sent) as response:
                    raw = await response.read()
                window.answer(response.status, raw)

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    counted, seconds = window.counted, window.seconds
    return {
        **counted,
        "seconds": seconds,
        "tokens_per_s": counted["tokens"] / seconds,
        "requests_per_s": (counted["requests"] - counted["errors"]) / seconds,
    }


def measure(
    checkpoint: Path,
    logs: Path,
    engine_cpus: list[int],
    gateway_cpus: list[int],
    plan: EmbeddingPlan,
    progress: Any = print,
    httpx_pool: bool = False,
) -> dict[str, Any]:
    """Start the embedding engine and a gateway in front of it, and interleave the two targets.

    `httpx_pool` adds a third target, a second gateway on httpx's own engine pool
    (`TANTRA_ENGINE_TRANSPORT=httpx`, the default before aiohttp's), side by side."""
    from engine.launcher import EngineConfig

    config = EngineConfig(
        model_dir=checkpoint,
        served_model_name=MODEL,
        port=free_port(),
        max_model_len=None,
        dtype="float32",
        runner="pooling",
    )
    engine = Service(
        "embedding-engine",
        config.command(),
        ready_url=config.base_url + "/health",
        log_path=logs / "embedding-engine.log",
        env=config.environment(),
        cpus=engine_cpus,
        cwd=servers.ROOT,
        ready_timeout_s=900.0,
    )
    base = profiles.by_name("tantra")
    cells: dict[str, list[dict[str, Any]]] = {"direct": [], "tantra": []}
    if httpx_pool:
        cells["tantra-httpx-pool"] = []
    with contextlib.ExitStack() as stack:
        progress("bench: starting vLLM on all-MiniLM-L6-v2 (pooling runner)")
        stack.enter_context(engine)
        gateway, gateway_url = servers.tantra(
            logs,
            "tantra-embeddings",
            config.base_url,
            profiles.settings_for(base, None, logs / "state"),
            gateway_cpus,
        )
        stack.enter_context(gateway)
        targets = {"direct": config.base_url, "tantra": gateway_url}
        if httpx_pool:
            targets["tantra-httpx-pool"] = stack.enter_context(
                _httpx_pool_gateway(logs, config.base_url, gateway_cpus)
            )
        for index in range(plan.rounds):
            order = list(targets) if index % 2 == 0 else list(reversed(targets))
            for name in order:
                result = asyncio.run(cell(targets[name], plan))
                cells[name].append(result)
                progress(f"bench: embeddings round {index + 1} {name}: {result['tokens_per_s']:.0f} tokens/s")
    return summarise(cells, plan)


@contextlib.contextmanager
def _httpx_pool_gateway(logs: Path, engine_url: str, cpus: list[int]) -> Iterator[str]:
    """The base profile on httpx's own engine pool, the default before aiohttp's."""
    settings = profiles.settings_for(profiles.by_name("tantra"), None, logs / "state")
    gateway, url = servers.tantra(
        logs, "tantra-embeddings-httpx", engine_url, {**settings, "TANTRA_ENGINE_TRANSPORT": "httpx"}, cpus
    )
    with gateway:
        yield url


def summarise(cells: dict[str, list[dict[str, Any]]], plan: EmbeddingPlan) -> dict[str, Any]:
    """Totals per target over every round, and the gateway's share of the direct throughput."""
    totals: dict[str, dict[str, Any]] = {}
    for name, runs in cells.items():
        seconds = sum(run["seconds"] for run in runs) or 1.0
        tokens = sum(run["tokens"] for run in runs)
        requests = sum(run["requests"] for run in runs)
        errors = sum(run["errors"] for run in runs)
        totals[name] = {
            "tokens_per_s": tokens / seconds,
            "requests_per_s": (requests - errors) / seconds,
            "requests": requests,
            "errors": errors,
            "rounds": [run["tokens_per_s"] for run in runs],
        }
    direct = totals["direct"]["tokens_per_s"]
    for row in totals.values():
        row["ratio"] = row["tokens_per_s"] / direct if direct else None
    ratio = totals["tantra"]["ratio"]
    return {"concurrency": plan.concurrency, "batch": plan.batch, "targets": totals, "ratio": ratio}


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md."""
    if not result:
        return []
    lines = [
        f"## Embeddings: all-MiniLM-L6-v2, {result['concurrency']} in flight, "
        f"{result['batch']} texts a request",
        "",
        "| target | input tokens/s | requests/s | errors |",
        "|---|---|---|---|",
    ]
    for name, row in result["targets"].items():
        lines.append(
            f"| {name} | {row['tokens_per_s']:.0f} | {row['requests_per_s']:.1f} | {row['errors']} |"
        )
    ratio = result["ratio"]
    lines += [
        "",
        f"Through the gateway: {ratio:.3f}x direct (target >= {TARGET_RATIO})." if ratio else "",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embeddings", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=servers.ROOT / ".cache" / "checkpoints" / "minilm")
    parser.add_argument("--rounds", type=int, default=EmbeddingPlan.rounds)
    parser.add_argument("--duration", type=float, default=EmbeddingPlan.duration_s)
    parser.add_argument(
        "--gateway-core",
        choices=("load", "gateway"),
        default="load",
        help="the gateway beside the load client (as `make bench` runs this row) or on the gateways' core",
    )
    parser.add_argument("--concurrency", type=int, default=EmbeddingPlan.concurrency, help="in flight")
    parser.add_argument(
        "--httpx-pool",
        action="store_true",
        help="also a gateway on httpx's own engine pool (TANTRA_ENGINE_TRANSPORT=httpx), side by side",
    )
    args = parser.parse_args(argv)
    from engine.checkpoint import ensure_checkpoint

    checkpoint = ensure_checkpoint(args.checkpoint, preset="minilm")
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    from bench.run import Cores

    cores = Cores()
    os.sched_setaffinity(0, cores.load)  # the load client's core, as `make bench` pins it
    result = measure(
        checkpoint,
        logs,
        cores.all,
        cores.gateway if args.gateway_core == "gateway" else cores.load,
        EmbeddingPlan(concurrency=args.concurrency, rounds=args.rounds, duration_s=args.duration),
        httpx_pool=args.httpx_pool,
    )
    print(json.dumps(result, indent=1))
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
