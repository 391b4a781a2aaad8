"""The embeddings row of the benchmark: one short cell against the real embedding engine directly
and through a gateway, and its summary, check and table (no timing asserted)."""

from __future__ import annotations

import asyncio

import pytest

from bench import embeddings
from bench.report import _embeddings_check

PLAN = embeddings.EmbeddingPlan(
    concurrency=2, batch=2, rounds=1, duration_s=1.0, warmup_s=0.2, answers_per_worker=1
)


@pytest.mark.engine
def test_cell_counts_the_engines_tokens(
    embedding_engine_url: str, pooling_gateway_url: str, api_key: str
) -> None:
    direct = asyncio.run(embeddings.cell(embedding_engine_url, PLAN))
    through = asyncio.run(embeddings.cell(pooling_gateway_url, PLAN, {"authorization": f"Bearer {api_key}"}))
    for result in (direct, through):
        assert result["requests"] > 0 and result["errors"] == 0
        assert result["tokens"] > 0 and result["tokens_per_s"] > 0


def test_summary_check_and_table() -> None:
    run = {"requests": 10, "errors": 0, "tokens": 1000, "seconds": 2.0, "tokens_per_s": 500.0}
    result = embeddings.summarise({"direct": [run, run], "tantra": [{**run, "tokens": 960}]}, PLAN)
    assert result["targets"]["direct"]["tokens_per_s"] == 500.0
    assert result["ratio"] == pytest.approx(0.96)
    check = _embeddings_check(result)
    assert check.holds is True and check.measured == "0.960x"
    assert _embeddings_check(None).holds is None
    table = "\n".join(embeddings.markdown(result))
    assert "| tantra | 480 |" in table and "0.960x direct" in table
