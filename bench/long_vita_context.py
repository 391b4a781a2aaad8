"""Long-VITA's long multimodal context, per image tile: memory and time at 16k and 128k tokens
(issue 28, point 4).

The `tiny-long-vita` checkpoint is served by vLLM once per variant, with the context that variant
declares: the published training scripts (`finetune_qwen25_14b_intern_300m_*_stage2.sh` for 16K,
`*_stage3.sh` for 128K) train at `--seq-length` = `--max-position-embeddings` = 16384 and 131072
with `--rotary-base 1e6` and no rope scaling, so each variant's `config.json` here is the tiny
checkpoint's with `max_position_embeddings` (and `sliding_window`, which Long-VITA's config sets to
it) at that length, `rope_theta` 1e6 and `rope_scaling` null, and vLLM runs `--max-model-len` at it.
The KV cache is sized to what that context needs at the tiny width (`kv_cache_gib`).

Each request is one chat whose user message holds `tiles` distinct 448 x 448 images (one tile each:
258 tokens, plus the template's newline), from 1 tile by powers of 4 up to filling the context.
Per request: the time to the first streamed token (prefill, vision tower included), decode
ms/token over `decode_tokens` tokens (`ignore_eos`), `prompt_tokens`, and the resident memory of
the engine's process group (read from /proc: before, peak while it runs, and PSS after). Prefix
caching is off, so every tile is encoded and prefilled. One engine at a time, always stopped; the
load average is recorded with each row (the machine is shared).

    nice -n 10 .venv/bin/python -m bench.long_vita_context   # writes bench/results/long_vita_context.*
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench import servers
from bench.procs import Service, free_port, usable_cpus

Progress = Callable[[str], None]

MODEL = "tiny-long-vita"
TILE_TOKENS = 258
"""`<img>` + 256 `<IMG_CONTEXT>` + `</img>`: one 448 px tile (docs/vision.md, *Tokens per tile*)."""
GiB = 1 << 30
MiB = 1 << 20
ROPE_THETA = 1_000_000.0
"""`--rotary-base 1000000.0` in every Long-VITA training stage (Qwen2.5's own)."""

# Qwen2.5-14B (Long-VITA's language model, `config_14B.json`): what a 1M-token deployment's cache is
# computed from. Weights: 14.7 B parameters in bf16; the vision tower (InternViT-300M + projector).
QWEN_14B = {"num_hidden_layers": 48, "num_key_value_heads": 8, "head_dim": 128}
QWEN_14B_WEIGHT_BYTES = 14.77e9 * 2
VISION_WEIGHT_BYTES = 0.31e9 * 2
ONE_MILLION = 1 << 20


@dataclass(frozen=True)
class Variant:
    """A served context: the label of the published checkpoint it stands for and its length."""

    label: str
    context: int


@dataclass(frozen=True)
class ContextPlan:
    variants: tuple[Variant, ...] = (Variant("16K", 16384), Variant("128K", 131072))
    decode_tokens: int = 16
    repeats_under: int = 8192
    """Rows whose prompt is shorter than this many tokens run twice (the median is kept): cheap,
    and the noisiest on a shared machine."""
    dtype: str = "bfloat16"
    omp_threads: int = 1
    """vLLM's worker runs in its engine-core process with this many threads (the shared host)."""

    @classmethod
    def quick(cls) -> ContextPlan:
        return cls(variants=(Variant("16K", 16384),), repeats_under=0)

    @classmethod
    def smoke(cls) -> ContextPlan:
        return cls(variants=(Variant("2K", 2048),), decode_tokens=4, repeats_under=0)


def tile_counts(context: int, decode_tokens: int) -> list[int]:
    """1, 4, 16, 64, ... tiles while they fit, then as many as fill the context."""
    fill = (context - decode_tokens - _PROMPT_OVERHEAD) // (TILE_TOKENS + 1)
    counts = [4**i for i in range(32) if 4**i < fill]
    return [*counts, fill]


_PROMPT_OVERHEAD = 64
"""Tokens around the tiles: the chat template's system prompt, the question, the reply header."""


def kv_bytes_per_token(config: dict[str, Any], dtype_bytes: int) -> int:
    """K and V, every layer, every KV head: what vLLM's cache holds per token (full attention)."""
    head_dim = int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])
    return 2 * int(config["num_hidden_layers"]) * int(config["num_key_value_heads"]) * head_dim * dtype_bytes


def kv_cache_gib(config: dict[str, Any], context: int, dtype_bytes: int) -> float:
    """The cache for one full context plus a quarter (vLLM rounds to blocks, a second request may
    start as one ends), in 1/64 GiB steps."""
    need = kv_bytes_per_token(config, dtype_bytes) * context * 1.25
    return math.ceil(need / (GiB / 64)) / 64


def variant_checkpoint(base: Path, out: Path, context: int) -> Path:
    """`base` with the variant's context in its config; every other file linked, not copied."""
    out.mkdir(parents=True, exist_ok=True)
    for path in base.iterdir():
        target = out / path.name
        if path.name == "config.json" or target.exists() or target.is_symlink():
            continue
        target.symlink_to(path.absolute())
    config = json.loads((base / "config.json").read_text())
    config.update(
        {
            "max_position_embeddings": context,
            "sliding_window": context,
            "rope_theta": ROPE_THETA,
            "rope_scaling": None,
        }
    )
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def tile_data_url(seed: int) -> str:
    """A 448 x 448 JPEG (one tile, no thumbnail): a smooth gradient, different per seed, small to send."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 448)
    pixels = (
        rng.integers(0, 255, (1, 1, 3))
        + ramp[None, :, None] * rng.integers(-120, 120, (1, 1, 3))
        + ramp[:, None, None] * rng.integers(-120, 120, (1, 1, 3))
    )
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def chat_body(tiles: int, seed: int, decode_tokens: int, model: str = MODEL) -> bytes:
    images = [
        {"type": "image_url", "image_url": {"url": tile_data_url(seed * 100_000 + i)}} for i in range(tiles)
    ]
    return orjson.dumps(
        {
            "model": model,
            "messages": [
                {"role": "user", "content": [*images, {"type": "text", "text": "Describe the images."}]}
            ],
            "max_tokens": decode_tokens,
            "min_tokens": decode_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )


# ---------------------------------------------------------------------------------------------
# The engine's memory, from /proc


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (the engine's API server, its engine core, their helpers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The fields after the command name (which may hold spaces): state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident bytes summed over `pids` (statm: cheap enough to sample while a request runs)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def pss_bytes(pids: Sequence[int]) -> int:
    """Proportional set size summed over `pids`: shared pages counted once across the group."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
        total += int(found.group(1)) * 1024 if found else 0
    return total


class PeakSampler:
    """The group's resident bytes every `interval_s` on a thread; `peak` once stopped."""

    def __init__(self, pids: Sequence[int], interval_s: float = 0.1) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.peak = rss_bytes(self.pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes(self.pids))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pids))


# ---------------------------------------------------------------------------------------------
# One request


def timed_chat(client: httpx.Client, url: str, body: bytes) -> dict[str, Any]:
    """Stream one chat: seconds to the first chunk with a choice (vLLM sends it with the first token),
    to the last, and the usage it reports."""
    began = time.perf_counter()
    first = last = None
    usage: dict[str, Any] = {}
    with client.stream("POST", url, content=body, headers={"content-type": "application/json"}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read().decode(errors='replace')[:500]}")
        for line in _data_lines(response.iter_lines()):
            chunk = orjson.loads(line)
            now = time.perf_counter() - began
            if chunk.get("choices"):
                first = now if first is None else first
                last = now
            if chunk.get("usage"):
                usage = chunk["usage"]
    if first is None or last is None or not usage:
        raise RuntimeError("the stream ended without a token or usage")
    tokens = int(usage["completion_tokens"])
    return {
        "ttft_s": first,
        "total_s": last,
        "prompt_tokens": int(usage["prompt_tokens"]),
        "completion_tokens": tokens,
        "decode_ms_per_token": (last - first) * 1000 / (tokens - 1) if tokens > 1 else None,
    }


def _data_lines(lines: Iterator[str]) -> Iterator[str]:
    for raw in lines:
        line = raw.strip()
        if line.startswith("data: {"):
            yield line[6:]


def measure_row(
    client: httpx.Client, base_url: str, pgid: int, tiles: int, seed: int, plan: ContextPlan
) -> dict[str, Any]:
    """One request of `tiles` tiles: its times, and the group's memory before, at peak and after."""
    body = chat_body(tiles, seed, plan.decode_tokens)
    pids = group_pids(pgid)
    before = rss_bytes(pids)
    load = os.getloadavg()[0]
    with PeakSampler(pids) as sampler:
        timing = timed_chat(client, base_url + "/v1/chat/completions", body)
    return {
        "tiles": tiles,
        **timing,
        "rss_before_bytes": before,
        "rss_peak_bytes": sampler.peak,
        "rss_added_peak_bytes": sampler.peak - before,
        "pss_after_bytes": pss_bytes(pids),
        "load_1min": load,
    }


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median TTFT, and every run's TTFT beside it."""
    ordered = sorted(rows, key=lambda r: r["ttft_s"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_ttft_s": [r["ttft_s"] for r in rows]}


# ---------------------------------------------------------------------------------------------
# One variant on its own engine


def engine_service(
    checkpoint: Path, variant: Variant, plan: ContextPlan, logs: Path, cpus: list[int]
) -> Service:
    from engine.launcher import EngineConfig

    config = json.loads((checkpoint / "config.json").read_text())
    tiles = tile_counts(variant.context, plan.decode_tokens)[-1]
    engine = EngineConfig(
        model_dir=checkpoint,
        served_model_name=MODEL,
        port=free_port(),
        max_model_len=variant.context,
        dtype=plan.dtype,
        kv_cache_gib=kv_cache_gib(config, variant.context, _dtype_bytes(plan.dtype)),
        worker_in_process=True,
        tool_call_parser=None,
        # `make gpu-check` runs this bench on a GPU with TANTRA_ENGINE_DEVICE=cuda.
        device="cuda" if os.environ.get("TANTRA_ENGINE_DEVICE") == "cuda" else "cpu",
        extra_args=(
            *("--limit-mm-per-prompt", json.dumps({"image": tiles, "video": 0})),
            "--no-enable-prefix-caching",
        ),
        env={"OMP_NUM_THREADS": str(plan.omp_threads)},
    )
    return Service(
        f"long-vita-{variant.label}",
        engine.command(),
        ready_url=engine.base_url + "/health",
        log_path=logs / f"long-vita-{variant.label}.log",
        env=engine.environment(),
        cpus=cpus,
        cwd=servers.ROOT,
        ready_timeout_s=900.0,
    )


def _dtype_bytes(dtype: str) -> int:
    return 4 if dtype in ("float32", "float") else 2


_KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")


def kv_cache_tokens_logged(log: str) -> int | None:
    """The tokens vLLM says its KV cache holds ("GPU KV cache size: 163,840 tokens")."""
    found = _KV_TOKENS.findall(log)
    return int(found[-1].replace(",", "")) if found else None


def measure_variant(
    checkpoint: Path, variant: Variant, plan: ContextPlan, logs: Path, cpus: list[int], progress: Progress
) -> dict[str, Any]:
    config = json.loads((checkpoint / "config.json").read_text())
    service = engine_service(checkpoint, variant, plan, logs, cpus)
    progress(f"bench: long-vita {variant.label}: starting vLLM with a {variant.context}-token context")
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    started = time.monotonic()
    with service, httpx.Client(timeout=httpx.Timeout(3600.0, connect=10.0)) as client:
        startup_s = time.monotonic() - started
        base_url = service.ready_url.removesuffix("/health")
        pids = group_pids(service.pid)
        idle = {"rss_bytes": rss_bytes(pids), "pss_bytes": pss_bytes(pids), "processes": len(pids)}
        timed_chat(client, base_url + "/v1/chat/completions", chat_body(1, 999, 2))  # warm-up
        for index, tiles in enumerate(tile_counts(variant.context, plan.decode_tokens)):
            runs = 2 if tiles * (TILE_TOKENS + 1) < plan.repeats_under else 1
            measured = [
                measure_row(client, base_url, service.pid, tiles, (index + 1) * 10 + run, plan)
                for run in range(runs)
            ]
            row = median_row(measured)
            rows.append(row)
            progress(
                f"bench: long-vita {variant.label}: {tiles} tiles, {row['prompt_tokens']} tokens: "
                f"TTFT {row['ttft_s']:.2f} s, decode {_fmt(row['decode_ms_per_token'], '.1f')} ms/token, "
                f"peak RSS +{row['rss_added_peak_bytes'] / MiB:.0f} MiB"
            )
        log = service.log_path.read_text(errors="replace")
    dtype_bytes = _dtype_bytes(plan.dtype)
    per_token = kv_bytes_per_token(config, dtype_bytes)
    return {
        "label": variant.label,
        "context": variant.context,
        "config": {
            key: config.get(key)
            for key in (
                "max_position_embeddings",
                "rope_theta",
                "rope_scaling",
                "num_hidden_layers",
                "hidden_size",
            )
        },
        "dtype": plan.dtype,
        "kv_bytes_per_token": per_token,
        "kv_cache_bytes_allocated": int(kv_cache_gib(config, variant.context, dtype_bytes) * GiB),
        "kv_cache_tokens_logged": kv_cache_tokens_logged(log),
        "startup_s": startup_s,
        "idle": idle,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rows": rows,
        "per_tile": per_tile(rows, per_token),
    }


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope; None with fewer than two distinct x."""
    if len(set(xs)) < 2:
        return None
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def per_tile(rows: list[dict[str, Any]], kv_per_token: int) -> dict[str, Any]:
    """What one more tile costs, fitted over the rows: prompt tokens, KV cache, prefill seconds,
    peak resident bytes; and at the fullest row, TTFT over its tiles (attention's share grows with
    the context, so the fullest row's ratio is above the fit's slope when it matters)."""
    tiles = [r["tiles"] for r in rows]
    tokens = _slope(tiles, [r["prompt_tokens"] for r in rows])
    full = rows[-1] if rows else None
    return {
        "prompt_tokens": tokens,
        "kv_cache_bytes": tokens * kv_per_token if tokens is not None else None,
        "prefill_s": _slope(tiles, [r["ttft_s"] for r in rows]),
        "rss_peak_bytes": _slope(tiles, [r["rss_added_peak_bytes"] for r in rows]),
        "ttft_s_at_fullest": full["ttft_s"] / full["tiles"] if full else None,
    }


def extrapolation(kv_dtype_bytes: int = 2, tokens: int = ONE_MILLION) -> dict[str, Any]:
    """A 1M-token Long-VITA deployment's cache and weights, computed from Qwen2.5-14B's shapes (not
    measured: there is no GPU here). Per GPU at tensor parallelism 1 to 8: the 8 KV heads and the
    language model's weights split evenly, the vision tower is replicated."""
    per_token = kv_bytes_per_token({**QWEN_14B, "hidden_size": 0, "num_attention_heads": 1}, kv_dtype_bytes)
    cache = per_token * tokens
    return {
        "computed_not_measured": True,
        "tokens": tokens,
        "kv_dtype_bytes": kv_dtype_bytes,
        "kv_bytes_per_token": per_token,
        "kv_bytes_per_tile": per_token * TILE_TOKENS,
        "kv_cache_bytes": cache,
        "tiles": tokens // TILE_TOKENS,
        "tensor_parallel": {
            str(tp): {
                "kv_cache_bytes_per_gpu": cache // tp,
                "weights_bytes_per_gpu": int(QWEN_14B_WEIGHT_BYTES / tp + VISION_WEIGHT_BYTES),
            }
            for tp in (1, 2, 4, 8)
        },
    }


def measure(logs: Path, cpus: list[int], plan: ContextPlan, progress: Progress = print) -> dict[str, Any]:
    """Every variant, one engine after the other."""
    from engine.checkpoint import ensure_checkpoint

    base = ensure_checkpoint(
        servers.ROOT / ".cache" / "long-vita" / "tiny-long-vita", "tiny-long-vita", 0, "long_vita"
    )
    variants = []
    load_start = os.getloadavg()
    for variant in plan.variants:
        checkpoint = variant_checkpoint(
            base, servers.ROOT / ".cache" / "long-vita" / f"context-{variant.label}", variant.context
        )
        variants.append(measure_variant(checkpoint, variant, plan, logs, cpus, progress))
    return {
        "plan": asdict(plan),
        "cpus": len(cpus),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "variants": variants,
        "extrapolation": {"bf16": extrapolation(2), "fp8": extrapolation(1)},
    }


# ---------------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md (and long_vita_context.md): a table per variant, then the 1M-token
    arithmetic."""
    if not result:
        return []
    load = result["load_average_start"], result["load_average_end"]
    lines = [
        "## Long-VITA: memory and time per image tile at 16k and 128k tokens of context (tiny-long-vita)",
        "",
        f"vLLM on {result['cpus']} shared cores, one engine per variant, prefix caching off, "
        f"{result['plan']['decode_tokens']} decoded tokens per request, {result['plan']['dtype']}; "
        f"load average (1, 5, 15 min) {_loads(load[0])} at the start, {_loads(load[1])} at the end.",
        "",
    ]
    for variant in result["variants"]:
        lines += _variant_section(variant)
    return [*lines, *_million_section(result["extrapolation"]), ""]


def _variant_section(variant: dict[str, Any]) -> list[str]:
    idle, config = variant["idle"], variant["config"]
    lines = [
        f"### {variant['label']}: {variant['context']} tokens (max_position_embeddings "
        f"{config['max_position_embeddings']}, rope_theta {config['rope_theta']:g}, "
        f"rope_scaling {config['rope_scaling']})",
        "",
        f"KV cache {variant['kv_bytes_per_token']} bytes per token, "
        f"{variant['kv_cache_bytes_allocated'] / MiB:.0f} MiB allocated "
        f"({_fmt(variant['kv_cache_tokens_logged'], ',')} tokens by vLLM's log); engine idle: "
        f"RSS {idle['rss_bytes'] / MiB:.0f} MiB, PSS {idle['pss_bytes'] / MiB:.0f} MiB over "
        f"{idle['processes']} processes; started in {variant['startup_s']:.0f} s; load average "
        f"{_loads(variant['load_average_start'])} to {_loads(variant['load_average_end'])}.",
        "",
        "| tiles | prompt tokens | TTFT (s) | TTFT per tile (ms) | decode (ms/token) | "
        "peak RSS added (MiB) | PSS after (MiB) | load 1 min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in variant["rows"]:
        lines.append(
            f"| {row['tiles']} | {row['prompt_tokens']} | {row['ttft_s']:.2f} | "
            f"{row['ttft_s'] * 1000 / row['tiles']:.0f} | {_fmt(row['decode_ms_per_token'], '.1f')} | "
            f"{row['rss_added_peak_bytes'] / MiB:.1f} | {row['pss_after_bytes'] / MiB:.0f} | "
            f"{row['load_1min']:.2f} |"
        )
    fit = variant["per_tile"]
    return [
        *lines,
        "",
        "Per tile (least-squares slope over the rows): "
        f"{_fmt(fit['prompt_tokens'], '.1f')} prompt tokens, "
        f"{_kib(fit['kv_cache_bytes'])} KiB of KV cache, {_ms(fit['prefill_s'])} ms of prefill, "
        f"{_kib(fit['rss_peak_bytes'])} KiB of peak resident memory; at the fullest row "
        f"{_ms(fit['ttft_s_at_fullest'])} ms of TTFT per tile.",
        "",
    ]


def _million_section(extrapolation: dict[str, Any]) -> list[str]:
    bf16, fp8 = extrapolation["bf16"], extrapolation["fp8"]
    lines = [
        "### 1M tokens on Qwen2.5-14B (computed from its shapes, not measured)",
        "",
        f"{bf16['kv_bytes_per_token'] // 1024} KiB of KV cache per token in bf16 "
        f"({fp8['kv_bytes_per_token'] // 1024} KiB in fp8), "
        f"{bf16['kv_bytes_per_tile'] / MiB:.1f} MiB per tile; "
        f"{bf16['tokens']:,} tokens ({bf16['tiles']:,} tiles): {bf16['kv_cache_bytes'] / GiB:.0f} GiB "
        f"({fp8['kv_cache_bytes'] / GiB:.0f} GiB in fp8).",
        "",
        "| tensor parallel | KV cache per GPU, bf16 (GiB) | fp8 (GiB) | weights per GPU (GB) |",
        "|---|---|---|---|",
    ]
    for tp, row in bf16["tensor_parallel"].items():
        lines.append(
            f"| {tp} | {row['kv_cache_bytes_per_gpu'] / GiB:.0f} | "
            f"{fp8['tensor_parallel'][tp]['kv_cache_bytes_per_gpu'] / GiB:.0f} | "
            f"{row['weights_bytes_per_gpu'] / 1e9:.1f} |"
        )
    return lines


def _loads(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def plot(result: dict[str, Any], path: Path) -> None:
    """TTFT and decode ms/token against the prompt's tiles, and peak resident memory added."""
    from bench.plots import plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for variant in result["variants"]:
        rows = variant["rows"]
        tiles = [r["tiles"] for r in rows]
        label = f"{variant['label']} ({variant['context']} tokens)"
        axes[0].plot(tiles, [r["ttft_s"] for r in rows], "o-", label=label)
        axes[1].plot(tiles, [r["decode_ms_per_token"] or 0.0 for r in rows], "o-", label=label)
        axes[2].plot(tiles, [r["rss_added_peak_bytes"] / MiB for r in rows], "o-", label=label)
    titles = ("time to first token (s)", "decode (ms/token)", "peak resident memory added (MiB)")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_xscale("log", base=4)
        axis.set_xlabel("448 px tiles in the prompt (258 tokens each)")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.suptitle("tiny-long-vita on vLLM (CPU): per-tile cost at 16k and 128k tokens of context")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_vita_context.json").write_text(json.dumps(result, indent=1))
    (out / "long_vita_context.md").write_text("\n".join(markdown(result)))
    plot(result, out / "long_vita_context.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.long_vita_context", description=__doc__)
    parser.add_argument(
        "--variant",
        action="append",
        metavar="LABEL=TOKENS",
        help="a context to serve (repeatable); default 16K=16384 and 128K=131072",
    )
    parser.add_argument("--decode-tokens", type=int, default=ContextPlan.decode_tokens)
    parser.add_argument("--out", type=Path, default=servers.ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    variants = tuple(_variant(v) for v in args.variant) if args.variant else ContextPlan.variants
    plan = ContextPlan(variants=variants, decode_tokens=args.decode_tokens)
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = measure(logs, usable_cpus(), plan)
    write(result, args.out)
    print("\n".join(markdown(result)))
    return 0


def _variant(text: str) -> Variant:
    label, _, tokens = text.partition("=")
    return Variant(label, int(tokens))


if __name__ == "__main__":
    raise SystemExit(main())
