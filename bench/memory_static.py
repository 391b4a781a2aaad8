"""The memory bench's static-model rows (issue 19, the 15 ms target): minilm-static, the model2vec
static model distilled from all-MiniLM-L6-v2 (engine/static_embedding.py), against MiniLM itself.

1. recall@5 of each on the same generated (fact, question) pairs, in the same FAISS flat index
   (MiniLM's vectors from vLLM's pooling runner, the static model's computed as the gateway computes
   them for TANTRA_LOCAL_EMBEDDING_MODELS: model2vec's StaticModel in process);
2. one query's embedding latency with each: MiniLM's straight from its engine over HTTP (what the
   memory path waits for), the static model's in process (what the gateway does instead).

The chat row with the static model is bench/memory_chat.py's, with `--embedding-model minilm-static`.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from bench import memory_backends, servers
from bench.memory_set import EMBEDDING_MODEL, Pair
from bench.stats import percentile

STATIC_MODEL = "minilm-static"
Matrix = npt.NDArray[np.float32]


def checkpoint() -> Path:
    """The static model's folder, distilled from MiniLM when missing (about 45 s)."""
    from engine.checkpoint import ensure_checkpoint

    return ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / STATIC_MODEL, preset=STATIC_MODEL)


@cache
def _model() -> Any:
    from model2vec import StaticModel

    return StaticModel.from_pretrained(checkpoint(), max_length=None)


def embed(texts: list[str]) -> Matrix:
    """Unit vectors of `texts` from the static model, in order."""
    return np.asarray(_model().encode(texts, use_multiprocessing=False), dtype=np.float32)


def compare(
    engine_url: str, pairs: list[Pair], facts: Matrix, questions: Matrix, progress: Any = print
) -> dict[str, Any]:
    """Recall@5 of both models in FAISS flat, and one query's embedding p50/p99 with each."""
    static_facts = embed([p.fact for p in pairs])
    static_questions = embed([p.question for p in pairs])
    rows: list[dict[str, Any]] = []
    with memory_backends.backends(("faiss-flat",)) as (flat,):
        for model, known, asked in (
            (EMBEDDING_MODEL, facts, questions),
            (STATIC_MODEL, static_facts, static_questions),
        ):
            recall = memory_backends.run(memory_backends.recall_at(flat, known, asked))
            rows.append({"model": model, "dimensions": int(known.shape[1]), "recall": recall["recall"]})
    texts = [p.question for p in pairs]
    rows[0].update(_latency(lambda text: _engine_embed(engine_url, text), texts[:60]))
    rows[1].update(_latency(lambda text: embed([text]), texts[:300]))
    for row in rows:
        progress(
            f"bench: memory embedder {row['model']}: recall@5 {row['recall']:.3f}, one query "
            f"p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms"
        )
    return {"pairs": len(pairs), "rows": rows}


def _engine_embed(engine_url: str, text: str) -> None:
    answer = httpx.post(engine_url + "/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": [text]})
    answer.raise_for_status()


def _latency(call: Any, texts: list[str]) -> dict[str, Any]:
    """p50/p99 ms of `call(text)`, one text at a time, after two calls of warm-up."""
    for text in texts[:2]:
        call(text)
    times: list[float] = []
    for text in texts:
        began = time.perf_counter()
        call(text)
        times.append((time.perf_counter() - began) * 1000)
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "queries": len(times)}


def markdown(result: dict[str, Any] | None) -> list[str]:
    if not result or not result.get("rows"):
        return []
    lines = [
        f"## Memory: the query embedder, MiniLM against its static distillation ({result['pairs']} pairs)",
        "",
        "| embedding model | dimensions | recall@5 (FAISS flat) | one query p50 ms | p99 ms | how |",
        "|---|---|---|---|---|---|",
    ]
    how = {EMBEDDING_MODEL: "vLLM pooling runner, over HTTP", STATIC_MODEL: "model2vec in process"}
    lines += [
        f"| {r['model']} | {r['dimensions']} | {r['recall']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
        f"| {how.get(r['model'], '')} |"
        for r in result["rows"]
    ]
    return [*lines, ""]
