"""Decode time per token and cache memory against context length, one architecture per engine."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.core.agreement import random_prompts
from bench.core.engine import serve, stream_completion
from bench.core.theory import cache_bytes

__all__ = ["ContextPoint", "run_context_bench"]


@dataclass(frozen=True)
class ContextPoint:
    architecture: str
    context: int
    """Prompt tokens; decoding runs from here to context + decode_tokens."""
    decode_ms_per_token: float
    """Median over the repeats."""
    decode_ms_samples: list[float]
    ttft_s: float
    """First request only (later repeats hit the prefix cache)."""
    cache_bytes_vllm: int | None
    """vLLM's `kv_cache_usage_perc` x its KV cache size: blocks and state pages the request holds."""
    cache_bytes_theory: int


def run_context_bench(
    checkpoints: dict[str, Path],
    contexts: Sequence[int],
    *,
    decode_tokens: int,
    repeats: int,
    kv_cache_gib: float,
    port: int,
    logs: Path,
    compile_model: bool,
) -> list[ContextPoint]:
    """For each architecture: one engine, a warm-up, then each context `repeats` times (prefix cache on)."""
    points: list[ContextPoint] = []
    prompts = random_prompts(contexts, seed=1)
    max_model_len = max(contexts) + decode_tokens
    for arch, checkpoint in checkpoints.items():
        config = json.loads((checkpoint / "config.json").read_text())
        with serve(
            checkpoint,
            f"{arch}-ctx",
            port=port,
            max_model_len=max_model_len,
            kv_cache_gib=kv_cache_gib,
            log_path=logs / f"context-{arch}.log",
            compile_model=compile_model,
        ) as served:
            stream_completion(served, random_prompts([16], seed=2)[0], 8)
            for context, prompt in zip(contexts, prompts, strict=True):
                runs = [
                    stream_completion(served, prompt, decode_tokens, sample_usage=True)
                    for _ in range(repeats)
                ]
                usage = [r.kv_usage_max for r in runs if r.kv_usage_max is not None]
                samples = [r.decode_s_per_token * 1000 for r in runs]
                point = ContextPoint(
                    architecture=arch,
                    context=context,
                    decode_ms_per_token=statistics.median(samples),
                    decode_ms_samples=samples,
                    ttft_s=runs[0].ttft_s,
                    cache_bytes_vllm=int(max(usage) * served.kv_cache_bytes) if usage else None,
                    cache_bytes_theory=cache_bytes(config, context + decode_tokens),
                )
                print(json.dumps(asdict(point)), flush=True)
                points.append(point)
    return points
