"""The real-engine runs driven by `vllm bench serve`: the concurrency sweep and the sustained load.

Both run vLLM's load tool in a child process pinned away from the gateway, while a
sampler thread records the CPU time of the engine and the gateway, so each sweep
point says who was busy: the engine saturating its cores while the gateway idles is
what "the engine, not the gateway, saturates" looks like in numbers.
"""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Service
from bench.servers import ROOT


@dataclass(frozen=True)
class Endpoint:
    """A base URL that `vllm bench serve` can load, and the headers it needs (an API key)."""

    label: str
    base_url: str
    headers: Mapping[str, str]


class CpuSampler:
    """Samples the CPU seconds of named services every `period_s` on a daemon thread."""

    def __init__(self, services: Mapping[str, Service], period_s: float = 0.5) -> None:
        self._services = dict(services)
        self._period_s = period_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._period_s)

    def _sample(self) -> None:
        self.samples.append((time.time(), {n: s.cpu_seconds() for n, s in self._services.items()}))

    def busy_cores(self, start: float, end: float) -> dict[str, float]:
        """Average cores each service used between two wall-clock times."""
        times = [t for t, _ in self.samples]
        if len(times) < 2:
            return {}
        i = max(0, bisect.bisect_left(times, start) - 1)
        j = min(len(times) - 1, bisect.bisect_right(times, end))
        (t0, c0), (t1, c1) = self.samples[i], self.samples[j]
        span = t1 - t0
        return {name: (c1[name] - c0[name]) / span for name in c0} if span > 0 else {}


def sweep_runs(
    endpoints: Sequence[Endpoint],
    model: str,
    tokenizer: Path,
    concurrencies: Sequence[int],
    *,
    prompts_per_slot: int,
    input_len: int,
    output_len: int,
) -> list[dict[str, Any]]:
    """Closed-loop runs at each concurrency, endpoints alternating at every level."""
    runs = []
    for concurrency in concurrencies:
        for endpoint in endpoints:
            runs.append(
                {
                    "kind": "sweep",
                    "label": endpoint.label,
                    "base_url": endpoint.base_url,
                    "headers": dict(endpoint.headers),
                    "model": model,
                    "tokenizer": str(tokenizer),
                    "num_prompts": max(8, prompts_per_slot * concurrency),
                    "max_concurrency": concurrency,
                    "input_len": input_len,
                    "output_len": output_len,
                }
            )
    return runs


def sustained_run(
    endpoint: Endpoint,
    model: str,
    tokenizer: Path,
    *,
    minutes: float,
    per_minute: float,
    input_len: int,
    output_len: int,
) -> dict[str, Any]:
    """Poisson arrivals at `per_minute` for `minutes`: an open loop, as real users arrive."""
    return {
        "kind": "sustained",
        "label": endpoint.label,
        "base_url": endpoint.base_url,
        "headers": dict(endpoint.headers),
        "model": model,
        "tokenizer": str(tokenizer),
        "num_prompts": max(1, round(per_minute * minutes)),
        "request_rate": per_minute / 60,
        "input_len": input_len,
        "output_len": output_len,
    }


def run_vllm_bench(
    runs: list[dict[str, Any]], work: Path, cpus: Sequence[int], timeout_s: float
) -> list[dict[str, Any]]:
    """Run `vllm bench serve` for each run in one child; each result gets its wall-clock window."""
    work.mkdir(parents=True, exist_ok=True)
    stamp = f"{int(time.time() * 1000)}"
    runs_path, out_path = work / f"vllm-runs-{stamp}.json", work / f"vllm-results-{stamp}.json"
    runs_path.write_text(json.dumps(runs))
    log = work / f"vllm-bench-{stamp}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.vllm_driver", str(runs_path), str(out_path)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            preexec_fn=(lambda: os.sched_setaffinity(0, list(cpus))) if cpus else None,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"vllm bench serve failed ({done.returncode}); log {log}:\n{tail}")
    results: list[dict[str, Any]] = json.loads(out_path.read_text())
    return results


def summarise_run(entry: dict[str, Any]) -> dict[str, Any]:
    """The numbers a report needs from one `vllm bench serve` result."""
    run, result = entry["run"], entry["result"]
    completed, failed = int(result.get("completed", 0)), int(result.get("failed", 0))
    total = completed + failed
    duration = float(result.get("duration", 0.0))
    return {
        "kind": run["kind"],
        "label": run["label"],
        "concurrency": run.get("max_concurrency"),
        "request_rate": run.get("request_rate"),
        "requests": total,
        "failed": failed,
        "error_rate": failed / total if total else None,
        "duration_s": duration,
        "requests_per_minute": completed / duration * 60 if duration else None,
        "request_throughput": result.get("request_throughput"),
        "output_throughput": result.get("output_throughput"),
        **{
            f"{metric}_{p}_ms": result.get(f"p{p}_{metric}_ms")
            for metric in ("ttft", "itl", "e2el", "tpot")
            for p in (50, 95, 99)
        },
        "error_samples": result.get("error_samples", []),
        "window": [entry.get("started_at"), entry.get("ended_at")],
    }
