"""Chat rows of several `python -m bench.memory --chat-only` runs side by side (docs/memory.md): each
run's `memory.json`, labelled (the tree it ran from), into one table (md, json) and one plot (png) of
the added TTFT p50 per run against the 15 ms target, with each run's load average.

    .venv/bin/python -m bench.memory_compare --run before=/tmp/a/memory.json --run after=... \\
        --out bench/results/memory-static --name recall-path
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.memory_chat import TARGET_MS


def row(label: str, path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    chat = result["chat"]
    return {
        "tree": label,
        "run_utc": str(chat["date"]).split(" ")[1][:5],
        "chats_a_side": chat["chats"],
        "load_start": round(chat["load_average_start"][0], 1),
        "load_end": round(chat["load_average_end"][0], 1),
        "off_p50_ms": round(chat["off_p50_ms"], 1),
        "on_p50_ms": round(chat["on_p50_ms"], 1),
        "added_p50_ms": round(chat["added_p50_ms"], 1),
        "recall_api_p50_ms": round(chat["parts"]["search_p50_ms"], 1),
        "placed": f"{chat['with_memories_placed']['on']}/{chat['chats']}",
        "errors": chat["errors"]["on"] + chat["errors"]["off"],
    }


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| tree | run (UTC) | chats a side | load average start → end | TTFT off p50 ms | on p50 ms "
        "| **added p50 ms** | recall via the search API p50 ms | memories placed | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tree']} | {r['run_utc']} | {r['chats_a_side']} | {r['load_start']} → {r['load_end']} "
            f"| {r['off_p50_ms']} | {r['on_p50_ms']} | **{r['added_p50_ms']}** | {r['recall_api_p50_ms']} "
            f"| {r['placed']} | {r['errors']} |"
        )
    return lines


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    labels = [f"{r['tree']}\n{r['run_utc']} (load {r['load_start']}→{r['load_end']})" for r in rows]
    colours = ["#999999" if r["tree"].startswith("before") else "#2a7ab0" for r in rows]
    axis.bar(range(len(rows)), [r["added_p50_ms"] for r in rows], color=colours)
    axis.axhline(TARGET_MS, color="#c0392b", linestyle="--", label=f"target {TARGET_MS:.0f} ms")
    axis.set_xticks(range(len(rows)), labels, fontsize=7)
    axis.set_ylabel("TTFT added by memory, p50 ms")
    axis.set_title("Memory in chat, 10k memories, minilm-static: added TTFT per run")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_compare", description=__doc__)
    parser.add_argument("--run", action="append", required=True, help="LABEL=path/to/memory.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default="compare")
    args = parser.parse_args(argv)
    rows = [row(label, Path(path)) for label, path in (item.split("=", 1) for item in args.run)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    (args.out / f"{args.name}.md").write_text("\n".join(markdown(rows)) + "\n")
    plot(rows, args.out / f"{args.name}.png")
    print("\n".join(markdown(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
