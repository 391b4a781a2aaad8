"""PNG plots of a run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_COLORS = {
    "tantra": "#1b7837",
    "tantra+access-log": "#74add1",
    "tantra+auth": "#5aae61",
    "tantra+auth+limits": "#a6dba0",
    "tantra+all": "#d9f0d3",
    "litellm": "#b2182b",
    "direct": "#4d4d4d",
}
_FLOOR_MS = 0.05


def overhead(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Added latency p50 and p99 (log scale) and throughput ratio per scenario, one bar per gateway."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    by_key = {(r["target"], r["scenario"]): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    width = 0.8 / max(1, len(targets))
    panels = (
        (
            "added_p50_ms",
            "added latency p50 (ms, log; <= 0 drawn at 0.05)\nJSON: end to end; stream: TTFT",
            True,
        ),
        ("added_p99_ms", "added latency p99 (ms, log; <= 0 drawn at 0.05)", True),
        ("throughput_ratio", "throughput / direct", False),
    )
    for ax, (key, label, log) in zip(axes, panels, strict=True):
        for i, target in enumerate(targets):
            xs, ys = [], []
            for j, scenario in enumerate(scenarios):
                row = by_key.get((target, scenario))
                value = row.get(key) if row else None
                if value is None:
                    continue
                xs.append(j + (i - (len(targets) - 1) / 2) * width)
                ys.append(max(value, _FLOOR_MS) if log else value)
            ax.bar(xs, ys, width, label=target, color=_COLORS.get(target), edgecolor="black", lw=0.4)
        ax.set_xticks(range(len(scenarios)), scenarios, rotation=30, ha="right")
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
            ax.axhline(1.0 if key == "added_p50_ms" else 5.0, color="black", ls="--", lw=1)
            ax.text(-0.4, 1.0 if key == "added_p50_ms" else 5.0, " budget", va="bottom", fontsize=8)
        else:
            ax.axhline(0.95, color="black", ls="--", lw=1)
            ax.text(-0.4, 0.95, " 95%", va="bottom", fontsize=8)
            values = [r[key] for r in rows if r.get(key) is not None]
            ax.set_ylim(0, max(1.15, min(max(values, default=1.0), 4.0) * 1.05))
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput and first-token latency against concurrency, and who used the cores."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for label in labels:
        mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["concurrency"])
        cs = [r["concurrency"] for r in mine]
        color = _COLORS.get(label, "#2166ac")
        axes[0].plot(cs, [r["output_throughput"] for r in mine], "o-", label=label, color=color)
        axes[1].plot(cs, [r["ttft_50_ms"] for r in mine], "o-", label=f"{label} p50", color=color)
        axes[1].plot(cs, [r["ttft_99_ms"] for r in mine], "o--", label=f"{label} p99", color=color, alpha=0.6)
        if label != "direct":
            axes[2].plot(
                cs, [r.get("engine_cores") or 0 for r in mine], "o-", label="engine", color="#2166ac"
            )
            axes[2].plot(cs, [r.get("gateway_cores") or 0 for r in mine], "o-", label="gateway", color=color)
    axes[0].set_title("output tokens/s")
    axes[1].set_title("time to first token (ms)")
    axes[1].set_yscale("log")
    axes[2].set_title(f"cores busy while loading through {labels[-1] if labels else ''}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("vLLM tiny model on CPU: direct vs through Tantra (vllm bench serve)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sustained(series: dict[str, list[float]], per_minute: float, path: Path) -> None:
    """Every request of the sustained run: end-to-end latency and first token over time."""
    latencies = series.get("latencies") or []
    if not latencies:
        return
    starts = series.get("start_times") or []
    if starts:
        t0 = min(starts)
        xs = [(s - t0) / 60 for s in starts]
        xlabel = "minutes into the run"
    else:  # older results kept no start times: arrival order, scaled by the mean rate
        xs = [i / per_minute for i in range(len(latencies))]
        xlabel = "request number / rate (about minutes into the run)"
    fig, ax = plt.subplots(figsize=(12, 4.4))
    ax.scatter(xs, [v * 1000 for v in latencies], s=4, label="end to end", color="#2166ac")
    ttfts = series.get("ttfts") or []
    if ttfts:
        ax.scatter(xs, [v * 1000 for v in ttfts], s=4, label="first token", color="#f4a582")
    ax.axhline(500, color="black", ls="--", lw=1)
    ax.text(0, 500, " 500 ms target", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ms (log)")
    ax.set_title(f"Sustained load: {per_minute:.0f} short chats per minute through the full stack")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
