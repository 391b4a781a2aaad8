"""`python -m bench.engine_memory`: an engine's resident memory broken down, per process and by kind.

Serves each checkpoint given (one engine at a time, Tantra's launcher) and samples every process's
/proc/PID/smaps (bench/core/memory.py) after the model is loaded, after a batch of requests
(`--requests`, default 8 at once of 256 prompt tokens and 32 new ones), and
(with `--gdb-trim`) after glibc's `malloc_trim(0)` has been called in each process from outside
through gdb: what the allocator holds freed but unreturned, measured without changing any code.
`--env TANTRA_POST_LOAD_TRIM=0` turns the plugin's own post-load trim off (engine/allocator.py).
`--report a.json b.json ...` writes the runs' table (md) and plot (png) to `--out-dir`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.core.agreement import random_prompts
from bench.core.engine import Served, complete, serve
from bench.core.memory import ProcessMemory, group_memory, without_kv_cache

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
ROLES = {"VLLM::Worker": "worker (model)", "VLLM::EngineCor": "engine core", "python": "API server"}
"""Process names (comm, 15 characters) to roles; the API server's small helper (vLLM's
multiprocessing resource tracker, ~13 MiB) is also `python` and is folded into `other`."""


def sample(served: Served) -> dict[str, Any]:
    """Every process of the engine's group, in MiB, with the KV cache found by its size."""
    pid = served.process.pid
    assert pid is not None
    processes = group_memory(pid, served.kv_cache_bytes)
    return summarize(processes)


def summarize(processes: list[ProcessMemory]) -> dict[str, Any]:
    return {
        "total_rss_mib": round(sum(p.rss for p in processes) / MiB, 1),
        "total_pss_mib": round(sum(p.pss for p in processes) / MiB, 1),
        "rss_without_kv_mib": round(without_kv_cache(processes) / MiB, 1),
        "processes": [
            {k: (round(v / MiB, 1) if k != "pid" and isinstance(v, int) else v) for k, v in asdict(p).items()}
            for p in processes
        ],
    }


def gdb_trim(served: Served) -> list[str]:
    """`malloc_trim(0)` in each process of the group, through gdb (it returns 1 when it freed pages)."""
    pid = served.process.pid
    assert pid is not None
    outputs = []
    for process in group_memory(pid):
        done = subprocess.run(
            ["gdb", "-p", str(process.pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        returned = " ".join(line for line in done.stdout.splitlines() if line.startswith("$"))
        outputs.append(f"{process.pid}: {returned}")
    return outputs


def measure(
    checkpoint: Path,
    *,
    kv_cache_gib: float,
    env: dict[str, str],
    trim: bool,
    port: int,
    requests: tuple[int, int, int] = (8, 256, 32),
) -> dict[str, Any]:
    """`requests`: how many at once, their prompt tokens and new tokens."""
    count, prompt_tokens, new_tokens = requests
    prompts = random_prompts([prompt_tokens] * count, seed=3)
    weights = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors"))
    result: dict[str, Any] = {
        "checkpoint": checkpoint.name,
        "weights_mib": round(weights / MiB, 1),
        "env": env,
        "kv_cache_gib": kv_cache_gib,
        "requests": list(requests),
    }
    with serve(
        checkpoint,
        "probe",
        port=port,
        max_model_len=512,
        kv_cache_gib=kv_cache_gib,
        log_path=ROOT / ".cache" / "bench-engine-memory" / f"{checkpoint.name}.log",
        extra_env=env,
    ) as served:
        result["startup_s"] = round(served.startup_s, 1)
        result["loaded"] = sample(served)
        if not prompts:  # `--requests 0,0,0`: the loaded engine only
            return result
        with ThreadPoolExecutor(len(prompts)) as pool:
            list(pool.map(lambda p: complete(served, p, new_tokens), prompts))
        result["after_requests"] = sample(served)
        if trim:
            result["gdb"] = gdb_trim(served)
            result["after_trim"] = sample(served)
    return result


SAMPLES = {
    "loaded": "loaded",
    "after_requests": "after the requests",
    "after_trim": "then malloc_trim(0) in every process (gdb)",
}


def _role(process: dict[str, Any]) -> str:
    role = ROLES.get(str(process["name"]), "other")
    return "other" if role == "API server" and process["rss"] < 100 else role


def table(runs: list[dict[str, Any]]) -> str:
    """One row per run and sample: RSS per role, the KV cache, the total less it, and PSS."""
    lines = [
        "| checkpoint | post-load trim | sample | weights MiB | API server | engine core | worker (model) "
        "| of it: heap | KV cache | all RSS | all RSS less KV | all PSS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        trim = "off" if run["env"].get("TANTRA_POST_LOAD_TRIM") == "0" else "on"
        for key in SAMPLES:
            if key not in run:
                continue
            sampled = run[key]
            by_role: dict[str, float] = {}
            heap = kv = 0.0
            for process in sampled["processes"]:
                role = _role(process)
                by_role[role] = by_role.get(role, 0.0) + process["rss"]
                kv += process["kv_cache"]
                if role == "worker (model)":
                    heap += process["heap"]
            lines.append(
                f"| {run['checkpoint']} | {trim} | {SAMPLES[key]} | {run['weights_mib']:.0f} "
                f"| {by_role.get('API server', 0):.0f} | {by_role.get('engine core', 0):.0f} "
                f"| {by_role.get('worker (model)', 0):.0f} | {heap:.0f} | {kv:.0f} "
                f"| {sampled['total_rss_mib']:.0f} | {sampled['rss_without_kv_mib']:.0f} "
                f"| {sampled['total_pss_mib']:.0f} |"
            )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """Stacked bars after the requests: each role's RSS less the KV cache, and the KV cache."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    parts: dict[str, list[float]] = {name: [] for name in (*ROLES.values(), "KV cache", "other")}
    for run in runs:
        trim = "" if run["env"].get("TANTRA_POST_LOAD_TRIM") == "0" else "\n+trim"
        labels.append(f"{run['checkpoint'].replace('gla_swa-', '')}{trim}")
        sums = dict.fromkeys(parts, 0.0)
        for process in run.get("after_requests", run["loaded"])["processes"]:
            sums[_role(process)] += process["rss"] - process["kv_cache"]
            sums["KV cache"] += process["kv_cache"]
        for name, values in parts.items():
            values.append(sums[name])
    fig, axis = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.5))
    bottom = [0.0] * len(labels)
    for name, values in parts.items():
        axis.bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.set_ylabel("RSS MiB (after the requests)")
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.grid(True, axis="y", alpha=0.3)
    axis.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_memory", description=__doc__)
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--kv-cache-gib", type=float, default=1.0)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the engine")
    parser.add_argument("--gdb-trim", action="store_true")
    parser.add_argument("--port", type=int, default=18777)
    parser.add_argument("--requests", default="8,256,32", help="concurrent requests, prompt and new tokens")
    parser.add_argument("--out", type=Path, default=None, help="the runs as JSON")
    parser.add_argument("--report", type=Path, nargs="+", default=None, help="JSON files of earlier runs")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results" / "engine_memory")
    args = parser.parse_args(argv)
    if args.report:
        runs = [run for path in args.report for run in json.loads(path.read_text())]
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "results.json").write_text(json.dumps(runs, indent=1))
        (args.out_dir / "results.md").write_text("# Engine memory by process\n\n" + table(runs) + "\n")
        plot(runs, args.out_dir / "engine_memory.png")
        print(table(runs))
        return 0
    env = dict(item.split("=", 1) for item in args.env)
    results = []
    for checkpoint in args.checkpoints:
        count, prompt_tokens, new_tokens = (int(n) for n in args.requests.split(","))
        result = measure(
            checkpoint,
            kv_cache_gib=args.kv_cache_gib,
            env=env,
            trim=args.gdb_trim,
            port=args.port,
            requests=(count, prompt_tokens, new_tokens),
        )
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
