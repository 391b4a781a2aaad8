"""The benchmark must not rot: its parts run for a moment here, with no timing asserted.

`make bench` takes half an hour; these run each piece (the fixed-latency upstream, the
load client, the statistics, the report with its plots, and `vllm bench serve` through
the gateway) in seconds against real servers.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bench.load import Scenario, SSEParser, Target, classify_event, run_cell
from bench.procs import Service
from bench.servers import ROOT, upstream
from bench.service import Endpoint, run_vllm_bench, summarise_run, sweep_runs
from bench.stats import overheads, percentile, summarise
from bench.upstream import Latency

MODEL = "bench-model"


def test_percentile_interpolates() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0], 100) == 2.0


def test_sse_parser_handles_any_chunking() -> None:
    stream = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"choices":[]}\r\n\r\ndata: [DONE]\n\n'
    whole = SSEParser().feed(stream)
    parser = SSEParser()
    pieces = [event for i in range(len(stream)) for event in parser.feed(stream[i : i + 1])]
    assert whole == pieces
    assert [classify_event(e) for e in whole[:2]] == ["token", "other"]
    assert whole[2] == b"[DONE]"
    assert classify_event(b'{"error": {"message": "x"}}') == "error"


@pytest.fixture(scope="module")
def fixed_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    logs = tmp_path_factory.mktemp("bench-logs")
    service, url = upstream(logs, Latency(ttft_s=0.005, itl_s=0.002, default_tokens=4), MODEL, [])
    with service:
        yield service, url


def test_load_client_measures_the_fixed_upstream(fixed_upstream: tuple[Service, str]) -> None:
    _, url = fixed_upstream
    target = Target("direct", url, MODEL)
    streamed = asyncio.run(run_cell(target, Scenario("s", True, 4, tokens=5), duration_s=0.3, warmup_s=0.05))
    plain = asyncio.run(run_cell(target, Scenario("j", False, 2, tokens=5), duration_s=0.3, warmup_s=0.05))
    assert streamed.ok and plain.ok and streamed.error_rate == 0 == plain.error_rate
    shot = streamed.ok[0]
    assert len(shot.token_times) == 5 and len(shot.itls) == 4
    assert shot.ttft is not None and 0 < shot.ttft <= shot.latency
    pair = [streamed, replace(streamed, target="copy")]
    rows = overheads(pair, summarise(pair))
    assert [r.target for r in rows] == ["copy"] and rows[0].throughput_ratio == 1.0


def test_bench_cli_smoke_writes_table_json_and_plots(tmp_path: Path) -> None:
    """The whole fixed-latency part, end to end: upstream, Tantra as deployed, report files."""
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-litellm", "--no-engine",
         "--profiles", "tantra", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((out / "results.json").read_text())
    scenarios = {row["scenario"] for row in document["fixed_latency"]["overhead"]}
    assert scenarios == {"json-c1", "json-c16", "json-c64", "stream-c1", "stream-c16", "stream-c64"}
    table = (out / "results.md").read_text()
    # Issue 24's budgets: the base profile at one in flight, judged on the one-in-flight part's cells.
    assert "| tantra (base profile) adds <= 1 ms at p50 (c=1, JSON and first token) |" in table
    assert "| tantra's CPU per streamed request at 64 in flight <= 1.5 ms |" in table
    assert {cell["target"] for cell in document["one_in_flight"]["cells"]} == {"direct", "tantra"}
    assert (out / "overhead_fixed.png").stat().st_size > 10_000
    # The cost curve (bench/cost_curve.py) is a part of the run, its smoke plan at 1 and 4 streams.
    assert {row["streams"] for row in document["cost_curve"]["rows"]} == {1, 4}
    assert "## Cost curve" in (out / "results.md").read_text()


@pytest.mark.engine
def test_vllm_bench_serve_runs_through_the_gateway(
    gateway_url: str,
    auth: dict[str, str],
    engine_url: str,
    model: str,
    tiny_checkpoint: Path,
    tmp_path: Path,
) -> None:
    """vLLM's own load tool, as the sweep and the sustained run call it, direct and via the gateway."""
    endpoints = [Endpoint("direct", engine_url, {}), Endpoint("tantra", gateway_url, auth)]
    runs = sweep_runs(endpoints, model, tiny_checkpoint, [2], prompts_per_slot=2, input_len=8, output_len=4)
    results = run_vllm_bench(runs, tmp_path, cpus=[], timeout_s=300)
    rows = [summarise_run(entry) for entry in results]
    assert [r["label"] for r in rows] == ["direct", "tantra"]
    assert all(r["requests"] == 8 and r["failed"] == 0 for r in rows), rows
