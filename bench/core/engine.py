"""One vLLM OpenAI server at a time, and the few measurements taken through it.

Servers are started with Tantra's own launcher (`EngineProcess`), so what is
measured is what `python -m engine serve` runs. Requests carry token ids, not
text, so prompt lengths are exact.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.launcher import EngineConfig, EngineProcess

__all__ = [
    "Served",
    "Stream",
    "complete",
    "group_rss_bytes",
    "kv_cache_usage",
    "serve",
    "stream_completion",
]

_USAGE_METRIC = re.compile(r"^vllm:kv_cache_usage_perc\{[^}]*\}\s+([0-9.eE+-]+)$", re.MULTILINE)


@dataclass
class Served:
    """A healthy engine and an HTTP client for it."""

    process: EngineProcess
    client: httpx.Client
    model: str
    kv_cache_bytes: int
    startup_s: float


@contextmanager
def serve(  # noqa: PLR0913 (keyword-only: the engine options a bench or test sets)
    model_dir: Path,
    name: str,
    *,
    port: int,
    max_model_len: int,
    kv_cache_gib: float,
    log_path: Path,
    compile_model: bool = False,
    extra_args: Sequence[str] = (),
    worker_in_process: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """Start vLLM on `model_dir`, wait until healthy, and always stop its whole process group.
    `worker_in_process`: a faster start without vLLM's thread binding (EngineConfig), for tests
    that measure answers, not speed."""
    config = EngineConfig(
        model_dir=model_dir,
        served_model_name=name,
        port=port,
        max_model_len=max_model_len,
        kv_cache_gib=kv_cache_gib,
        fast_start=not compile_model,
        # `make gpu-check` runs the context bench on a GPU with TANTRA_ENGINE_DEVICE=cuda.
        device="cuda" if os.environ.get("TANTRA_ENGINE_DEVICE") == "cuda" else "cpu",
        tool_call_parser=None,
        extra_args=tuple(extra_args),
        worker_in_process=worker_in_process,
        env=dict(extra_env or {}),
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:

        def sink(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        process = EngineProcess(config, log_sink=sink, startup_timeout=1200)
        started = time.monotonic()
        with process, httpx.Client(base_url=config.base_url, timeout=3600) as client:
            yield Served(process, client, name, int(kv_cache_gib * (1 << 30)), time.monotonic() - started)


@dataclass(frozen=True)
class Stream:
    """Timing of one streamed completion."""

    prompt_tokens: int
    tokens: list[int]
    ttft_s: float
    decode_s_per_token: float
    """(last token time - first token time) / (tokens - 1): the inter-token time a reader sees."""
    kv_usage_max: float | None
    """Largest `vllm:kv_cache_usage_perc` sampled while the request was decoding."""


def stream_completion(
    served: Served, prompt: Sequence[int], max_tokens: int, *, sample_usage: bool = False
) -> Stream:
    """Greedy, EOS ignored, streamed; token arrival times give TTFT and the per-token decode time."""
    body = {
        "model": served.model,
        "prompt": list(prompt),
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "return_token_ids": True,
    }
    started = time.perf_counter()
    arrivals: list[float] = []
    tokens: list[int] = []
    usage: list[float] = []
    with served.client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                new = choice.get("token_ids") or []
                if new:
                    now = time.perf_counter()
                    arrivals.extend([now] * len(new))
                    tokens.extend(new)
            # Sample the cache mid-decode, when the request holds its blocks.
            if sample_usage and len(tokens) in (max_tokens // 4, max_tokens // 2):
                value = kv_cache_usage(served)
                if value is not None:
                    usage.append(value)
    if not arrivals:
        raise RuntimeError("the engine streamed no tokens")
    decode = (arrivals[-1] - arrivals[0]) / max(1, len(arrivals) - 1)
    return Stream(len(prompt), tokens, arrivals[0] - started, decode, max(usage) if usage else None)


def complete(
    served: Served, prompt: Sequence[int], max_tokens: int, *, logprobs: int | None = None
) -> dict[str, Any]:
    """One greedy, non-streamed completion; the first choice, with `token_ids` (and top `logprobs`)."""
    body: dict[str, Any] = {
        "model": served.model,
        "prompt": list(prompt),
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
        "return_token_ids": True,
    }
    if logprobs is not None:
        body["logprobs"] = logprobs
    response = served.client.post("/v1/completions", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"completion failed with {response.status_code}: {response.text[:500]}")
    choice: dict[str, Any] = response.json()["choices"][0]
    return choice


def kv_cache_usage(served: Served) -> float | None:
    """vLLM's own fraction of KV-cache blocks in use (attention pages and recurrent-state pages alike)."""
    try:
        text = served.client.get("/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    match = _USAGE_METRIC.search(text)
    return float(match.group(1)) if match else None


def group_rss_bytes(pid: int) -> dict[str, int]:
    """Resident memory of every process in `pid`'s process group (the API server and its engine core).

    Returns {"total": ..., "<pid> <name>": ...}. Pages shared between the
    processes count once per process, as RSS always does.
    """
    sizes: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) != pid:  # field 5 of /proc/pid/stat: process group id
            continue
        rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if rss:
            sizes[f"{entry} {name}"] = int(rss.group(1)) * 1024
    sizes["total"] = sum(sizes.values())
    return sizes
