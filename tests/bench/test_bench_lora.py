"""The LoRA row of the benchmark: a PEFT adapter built on the session's LoRA engine's base (gla_swa
`tiny`, served as `tiny-gla`; `make bench` runs qwen2-tiny), loaded into that engine at run time,
one short round of base against LoRA, and the row's summary, table and plot (no timing asserted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import lora
from engine.launcher import EngineProcess
from tests.conftest import LORA_MODEL

PLAN = lora.LoraPlan(concurrency=2, max_tokens=4, rounds=1, requests=4, warmup_requests=1)


@pytest.fixture(scope="module")
def served_adapter(
    lora_engine: EngineProcess, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The bench's adapter registered under its name, and unregistered after (the engine is shared)."""
    adapter = lora.build_adapter(tiny_checkpoint, tmp_path_factory.mktemp("lora") / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == lora.RANK
    url = lora_engine.base_url
    body = {"lora_name": lora.ADAPTER, "lora_path": str(adapter)}
    httpx.post(url + "/v1/load_lora_adapter", json=body, timeout=120).raise_for_status()
    yield url
    httpx.post(url + "/v1/unload_lora_adapter", json={"lora_name": lora.ADAPTER}, timeout=60)


@pytest.mark.engine
def test_one_round_of_base_against_lora(served_adapter: str, tmp_path: Path) -> None:
    result = lora.rounds(served_adapter, PLAN, progress=lambda _: None, base=LORA_MODEL)
    for name in ("base", "lora"):
        row = result["targets"][name]
        assert row["requests"] > 0 and row["errors"] == 0
        assert row["requests_per_s"] > 0 and row["ttft_p50_ms"] is not None
    assert result["throughput_ratio"] is not None and result["ttft_ratio"] is not None
    lora.write(result, tmp_path)
    assert (tmp_path / "lora.png").stat().st_size > 0
    assert "| lora |" in (tmp_path / "lora.md").read_text()


def test_summary_and_table() -> None:
    base = {"requests": 10, "errors": 0, "seconds": 2.0, "ttft_ms": [10.0, 20.0, 30.0]}
    adapted = {"requests": 9, "errors": 1, "seconds": 2.0, "ttft_ms": [15.0, 30.0, 45.0]}
    result = lora.summarise({"base": [base], "lora": [adapted]}, PLAN)
    assert result["targets"]["base"]["requests_per_s"] == 5.0
    assert result["throughput_ratio"] == pytest.approx(0.8)
    assert result["ttft_ratio"] == pytest.approx(1.5)
    table = "\n".join(lora.markdown(result))
    assert "| lora | 9 | 1 | 4.00 |" in table and "0.80x the base's requests/s" in table
    assert lora.markdown(None) == []
