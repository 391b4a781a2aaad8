"""Results as JSON (everything measured), Markdown tables (with the ratios) and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.core.context import ContextPoint
from bench.core.quant import SchemePoint

__all__ = ["context_table", "quant_table", "write_results"]

MiB = 1 << 20


def context_table(points: Sequence[ContextPoint]) -> str:
    """Per architecture and context: decode ms/token, its ratio to the shortest context, cache memory."""
    lines = [
        "| architecture | context | decode ms/token | x shortest context | cache MiB (vLLM) "
        "| cache MiB (theory) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arch in dict.fromkeys(p.architecture for p in points):
        rows = sorted((p for p in points if p.architecture == arch), key=lambda p: p.context)
        base = rows[0].decode_ms_per_token
        for p in rows:
            vllm = "n/a" if p.cache_bytes_vllm is None else f"{p.cache_bytes_vllm / MiB:.1f}"
            lines.append(
                f"| {arch} | {p.context} | {p.decode_ms_per_token:.1f} | {p.decode_ms_per_token / base:.2f} "
                f"| {vllm} | {p.cache_bytes_theory / MiB:.1f} |"
            )
    return "\n".join(lines)


def quant_table(points: Sequence[SchemePoint]) -> str:
    """Per scheme: speed and memory, each with its ratio to the first (bf16) row."""
    if not points:
        return ""
    base = points[0]
    lines = [
        "| scheme | weights MiB | decode tok/s (1 req) | x bf16 | batch tok/s | x bf16 | RSS MiB (group) "
        "| x bf16 | RSS MiB (largest proc) | RSS MiB less KV cache | x bf16 | agree (teacher-forced) "
        "| agree (bf16 margin > 0.1) | agree (free-running) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        forced = "-" if p.agreement_teacher_forced is None else f"{p.agreement_teacher_forced:.1%}"
        free = "-" if p.agreement_free_running is None else f"{p.agreement_free_running:.1%}"
        clear = "-" if p.agreement_clear_margin is None else f"{p.agreement_clear_margin:.1%}"
        less_kv = _less_kv(p, base)
        lines.append(
            f"| {p.scheme} | {p.weights_bytes / MiB:.0f} "
            f"| {p.decode_tok_s:.1f} | {p.decode_tok_s / base.decode_tok_s:.2f} "
            f"| {p.batch_tok_s:.1f} | {p.batch_tok_s / base.batch_tok_s:.2f} "
            f"| {p.rss_bytes / MiB:.0f} | {p.rss_bytes / base.rss_bytes:.2f} "
            f"| {p.rss_largest_process_bytes / MiB:.0f} | {less_kv} | {forced} | {clear} | {free} |"
        )
    return "\n".join(lines)


def _less_kv(point: SchemePoint, base: SchemePoint) -> str:
    """'MiB | ratio' of the RSS less the KV cache ('- | -' for results from before it was measured)."""
    if point.rss_without_kv_bytes is None:
        return "- | -"
    mib = f"{point.rss_without_kv_bytes / MiB:.0f}"
    if not base.rss_without_kv_bytes:
        return f"{mib} | -"
    return f"{mib} | {point.rss_without_kv_bytes / base.rss_without_kv_bytes:.2f}"


def write_results(
    out: Path,
    context: Sequence[ContextPoint],
    quant: Sequence[SchemePoint],
    settings: dict[str, Any],
) -> list[Path]:
    """Write results.json, results.md and the plots under `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json", out / "results.md"]
    payload = {
        "settings": settings,
        "context": [asdict(p) for p in context],
        "quantization": [asdict(p) for p in quant],
    }
    written[0].write_text(json.dumps(payload, indent=2) + "\n")
    sections = ["# Engine benchmarks (bench/core)", "", "Settings: `" + json.dumps(settings) + "`", ""]
    if context:
        sections += ["## Decode cost against context", "", context_table(context), ""]
    if quant:
        sections += ["## Weight formats", "", quant_table(quant), ""]
    written[1].write_text("\n".join(sections))
    if context:
        written.append(_plot_context(out / "context.png", context))
    if quant:
        written.append(_plot_quant(out / "quantization.png", quant))
    return written


def _plot_context(path: Path, points: Sequence[ContextPoint]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for arch in dict.fromkeys(p.architecture for p in points):
        rows = sorted((p for p in points if p.architecture == arch), key=lambda p: p.context)
        xs = [p.context for p in rows]
        left.plot(xs, [p.decode_ms_per_token for p in rows], marker="o", label=arch)
        right.plot(xs, [p.cache_bytes_theory / MiB for p in rows], marker="o", label=f"{arch} (theory)")
        measured = [(p.context, p.cache_bytes_vllm / MiB) for p in rows if p.cache_bytes_vllm is not None]
        if measured:
            right.plot(*zip(*measured, strict=True), marker="x", linestyle="--", label=f"{arch} (vLLM)")
    for axis, title in ((left, "decode time per token (ms)"), (right, "cache per sequence (MiB)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("context (tokens)")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_quant(path: Path, points: Sequence[SchemePoint]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.scheme for p in points]
    panels = (
        ("decode tok/s (1 request)", [p.decode_tok_s for p in points]),
        (f"batch tok/s ({points[0].concurrency} requests)", [p.batch_tok_s for p in points]),
        ("engine RSS (MiB)", [p.rss_bytes / MiB for p in points]),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.6))
    for axis, (title, values) in zip(axes, panels, strict=True):
        axis.bar(names, values, color=["#4c72b0", "#dd8452", "#55a868"][: len(names)])
        axis.set_title(title)
        axis.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
