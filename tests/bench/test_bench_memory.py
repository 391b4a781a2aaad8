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


def test_the_probes_block_and_side_by_side_table(tmp_path: Path) -> None:
    """bench/memory_block.py sends the block memory in chat places (the intro, then facts within the
    budget); bench/memory_compare.py puts chat rows side by side with their load, and plots them."""
    import json

    from bench import memory_block, memory_compare

    facts = [p.fact for p in memory_set.retrieval_set(10)[:5]]
    block = memory_block.block(facts)
    assert block.splitlines() == ["Remembered facts about the user:", *(f"- {fact}" for fact in facts)]
    assert memory_block.block(["x" * 2000]) == ""  # nothing fits the 256-token budget
    chat = {
        "date": "2026-12-07 01:15:02 UTC", "chats": 60, "load_average_start": [9.3, 8, 6],
        "load_average_end": [12.7, 9, 7], "off_p50_ms": 68.7, "on_p50_ms": 98.2, "added_p50_ms": 29.5,
        "parts": {"search_p50_ms": 22.4}, "with_memories_placed": {"on": 60}, "errors": {"on": 0, "off": 0},
    }  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"chat": chat}))
    assert memory_compare.main(["--run", f"after={tmp_path / 'run.json'}", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "compare.md").read_text()
    assert "| after | 01:15 | 60 | 9.3 → 12.7 | 68.7 | 98.2 | **29.5** | 22.4 | 60/60 | 0 |" in table
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_the_probes_sides_send_what_the_gateway_places() -> None:
    """Each side of bench/memory_block.py: the gateway's own placement (`with_block`) for `with` and
    `system+appended`, the layout before it for `before` and `system+separate`."""
    from bench import memory_block
    from gateway.services.memory_chat import with_block

    facts = [p.fact for p in memory_set.retrieval_set(10)[:5]]
    made = memory_block.sides(system=True)
    user = [{"role": "user", "content": "q"}]
    own = [{"role": "system", "content": memory_block.SYSTEM}, *user]
    assert made["with"]("q", facts) == with_block(user, memory_block.block(facts))
    assert made["system+appended"]("q", facts) == with_block(own, memory_block.block(facts))
    assert made["system+separate"]("q", facts)[1:] == own
    before = made["before"]("q", facts)[0]["content"]
    assert before.splitlines()[0] == memory_block.BEFORE_INTRO
    assert before.splitlines()[1:] == memory_block.block(facts).splitlines()[1:]
    assert set(memory_block.BASE) <= set(made) and set(memory_block.sides(system=False)) == {
        "without",
        "with",
        "before",
    }
