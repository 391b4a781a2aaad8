"""bf16 vs int8 W8A8 vs 4-bit W4A16 on one architecture: speed, resident memory, agreement with bf16."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.core.agreement import agreement, greedy_sequences, random_prompts, teacher_forced
from bench.core.engine import Served, complete, group_rss_bytes, serve, stream_completion
from bench.core.memory import group_memory, without_kv_cache

__all__ = ["SchemePoint", "run_quant_bench"]


@dataclass(frozen=True)
class SchemePoint:
    scheme: str
    weights_bytes: int
    """Size of the checkpoint's safetensors on disk."""
    decode_tok_s: float
    """One request decoding alone (median of the repeats)."""
    batch_tok_s: float
    """Generated tokens per second with `concurrency` requests in flight."""
    concurrency: int
    rss_bytes: int
    """Peak RSS summed over the engine's process group during the batch run."""
    rss_largest_process_bytes: int
    startup_s: float
    agreement_teacher_forced: float | None
    agreement_free_running: float | None
    agreement_clear_margin: float | None = None
    """Teacher-forced agreement where bf16's top-1 leads its runner-up by more than CLEAR_MARGIN."""
    kv_cache_resident_bytes: int | None = None
    """Resident pages of the KV cache's mapping after the batch (bench/core/memory.py)."""
    rss_without_kv_bytes: int | None = None
    """The group's RSS after the batch less the KV cache's resident pages: model and vLLM alone."""
    processes: tuple[dict[str, int | str], ...] = ()
    """Each process's memory by kind after the batch (ProcessMemory as a dict)."""


CLEAR_MARGIN = 0.1


# The benchmark's knobs, all by keyword, straight from the CLI.
def run_quant_bench(  # noqa: PLR0913
    checkpoints: dict[str, Path],
    *,
    prompt_tokens: int,
    new_tokens: int,
    concurrency: int,
    repeats: int,
    agreement_prompts: int,
    kv_cache_gib: float,
    port: int,
    logs: Path,
    compile_model: bool,
) -> list[SchemePoint]:
    """`checkpoints` maps scheme name to directory; the first must be the bf16 baseline."""
    points: list[SchemePoint] = []
    batch = random_prompts([prompt_tokens] * concurrency, seed=3)
    probe = random_prompts([prompt_tokens // 2 + 7 * i for i in range(agreement_prompts)], seed=4)
    baseline: list[list[int]] | None = None
    margins: list[list[float]] = []
    for scheme, checkpoint in checkpoints.items():
        with serve(
            checkpoint,
            f"small-{scheme}",
            port=port,
            max_model_len=prompt_tokens + new_tokens + 64,
            kv_cache_gib=kv_cache_gib,
            log_path=logs / f"quant-{scheme}.log",
            compile_model=compile_model,
        ) as served:
            decode_tok_s, rss = _speed(served, batch, new_tokens, repeats)
            greedy = greedy_sequences(served, probe, 32)
            scored = teacher_forced(served, probe, baseline or greedy)
            forced = free = clear = None
            if baseline is None:
                baseline = greedy
                margins = [[margin for _, margin in row] for row in scored]
            else:
                forced = agreement(baseline, [[tok for tok, _ in row] for row in scored])
                free = agreement(baseline, greedy)
                clear = _clear_margin_agreement(baseline, margins, scored)
            point = SchemePoint(
                scheme=scheme,
                weights_bytes=sum(p.stat().st_size for p in checkpoint.glob("*.safetensors")),
                decode_tok_s=decode_tok_s,
                batch_tok_s=rss[0],
                concurrency=concurrency,
                rss_bytes=rss[1],
                rss_largest_process_bytes=rss[2],
                startup_s=served.startup_s,
                agreement_teacher_forced=forced,
                agreement_free_running=free,
                agreement_clear_margin=clear,
                **_memory_breakdown(served),
            )
            print(json.dumps(asdict(point)), flush=True)
            points.append(point)
    return points


def _speed(
    served: Served, batch: list[list[int]], new_tokens: int, repeats: int
) -> tuple[float, tuple[float, int, int]]:
    """After a warm-up: one request decoding alone (tokens / s, the median of `repeats`), and the
    whole batch at once (`_run_batch_sampling_rss`)."""
    stream_completion(served, random_prompts([16], seed=2)[0], 8)
    pid = served.process.pid
    assert pid is not None
    singles = [stream_completion(served, batch[0], new_tokens).decode_s_per_token for _ in range(repeats)]
    return 1.0 / sorted(singles)[len(singles) // 2], _run_batch_sampling_rss(served, batch, new_tokens, pid)


def _memory_breakdown(served: Served) -> dict[str, Any]:
    """SchemePoint's breakdown fields, sampled once after the batch (bench/core/memory.py)."""
    assert served.process.pid is not None
    memory = group_memory(served.process.pid, served.kv_cache_bytes)
    return {
        "kv_cache_resident_bytes": sum(p.kv_cache for p in memory),
        "rss_without_kv_bytes": without_kv_cache(memory),
        "processes": tuple(asdict(p) for p in memory),
    }


def _clear_margin_agreement(
    baseline: list[list[int]], margins: list[list[float]], scored: list[list[tuple[int, float]]]
) -> float | None:
    pairs = [
        (want, got[0])
        for want_row, margin_row, got_row in zip(baseline, margins, scored, strict=True)
        for want, margin, got in zip(want_row, margin_row, got_row, strict=True)
        if margin > CLEAR_MARGIN
    ]
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def _run_batch_sampling_rss(
    served: Served, prompts: Sequence[Sequence[int]], new_tokens: int, pid: int
) -> tuple[float, int, int]:
    """(generated tokens / s, peak group RSS, peak RSS of the largest process, which holds the weights)."""
    peak_total = peak_core = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(complete, served, p, new_tokens) for p in prompts]
        while not all(f.done() for f in futures):
            sizes = group_rss_bytes(pid)
            peak_total = max(peak_total, sizes["total"])
            peak_core = max(peak_core, max(v for k, v in sizes.items() if k != "total"))
            time.sleep(0.2)
        generated = sum(len(f.result()["token_ids"]) for f in futures)
    elapsed = time.perf_counter() - started
    return generated / elapsed, peak_total, peak_core
