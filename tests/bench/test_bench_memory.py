"""The memory bench (bench/memory.py) must not rot: every part at tiny sizes on the session's real
chat and embedding engines, real Chroma and pgvector servers and a real gateway, and its table and
plot written (no timing asserted; the real sizes are `python -m bench.memory`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import memory, memory_set
from bench.procs import usable_cpus


def test_the_retrieval_set_is_deterministic_and_distinct() -> None:
    first = memory_set.retrieval_set(1000)
    assert first == memory_set.retrieval_set(1000)
    assert len({pair.fact for pair in first}) == 1000
    assert len({pair.question for pair in first}) > 900  # the same person and topic is never drawn twice
    assert first != memory_set.retrieval_set(1000, seed=20)


@pytest.mark.engine
def test_a_small_run_measures_every_backend_and_the_chat(
    tmp_path: Path, embedding_engine_url: str, engine_url: str
) -> None:
    cpus = usable_cpus()
    engines = (embedding_engine_url, engine_url)
    result = memory.measure(tmp_path / "logs", cpus, cpus[-1:], memory.MemoryPlan.smoke(), engines=engines)
    assert [row["backend"] for row in result["recall"]] == list(memory.BACKENDS)
    # 60 pairs: every backend finds nearly every question's own fact among its 5 nearest.
    assert all(row["recall"] > 0.8 for row in result["recall"]), result["recall"]
    assert {(row["backend"], row["size"]) for row in result["latency"]} == {
        (name, 300) for name in memory.BACKENDS
    }
    assert all(row["queries"] >= 5 and row["p50_ms"] > 0 for row in result["latency"])
    chat = result["chat"]
    assert chat["errors"] == {"on": 0, "off": 0}
    assert len(chat["ttft_ms"]["on"]) == len(chat["ttft_ms"]["off"]) == 2
    assert chat["parts"]["scope_seqs_p50_ms"] > 0
    memory.write(result, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"memory.json", "memory.md", "memory.png"}
    table = (tmp_path / "out" / "memory.md").read_text()
    assert "| faiss-hnsw |" in table and "TTFT with memory on and off" in table
    # MiniLM against its static distillation, in the same FAISS flat index.
    assert [row["model"] for row in result["static"]["rows"]] == ["all-minilm-l6-v2", "minilm-static"]
    assert all(row["recall"] > 0.5 and row["p50_ms"] > 0 for row in result["static"]["rows"])
    assert "| minilm-static | 256 |" in table


def test_a_chat_only_run_keeps_the_last_full_runs_other_rows(tmp_path: Path) -> None:
    import argparse
    import json

    args = argparse.Namespace(
        skip="",
        sizes=None,
        query_budget=None,
        chats=None,
        no_chat=False,
        chat_only=True,
        embedding_model="minilm-static",
        no_static=False,
    )
    plan = memory._overrides(memory.MemoryPlan(), args)
    assert plan.backends == () and plan.sizes == () and plan.chat is not None and not plan.static
    assert plan.chat.embedding_model == "minilm-static"
    earlier = tmp_path / "memory.json"
    earlier.write_text(json.dumps({"recall": [{"backend": "faiss-flat"}], "chat": {"added_p50_ms": 635.0}}))
    merged = memory._with_earlier({"chat": {"added_p50_ms": 9.0}, "date": "today"}, earlier)
    assert merged["recall"] == [{"backend": "faiss-flat"}]
    assert merged["chat"]["added_p50_ms"] == 9.0 and merged["chat"]["date"] == "today"
