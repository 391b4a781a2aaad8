"""Readiness through the gateway against a real engine frozen with SIGSTOP: its HTTP server still
answers /health, yet /readyz?engines=1 turns red within one interval plus one timeout, and green after
SIGCONT, while the gateway's own /readyz stays green (issue 26, point 6)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.launcher import EngineConfig, EngineProcess
from gateway import Settings, create_app
from tests.servers import ThreadedServer, free_port

pytestmark = pytest.mark.engine

INTERVAL_S = 0.5
TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def spare_engine(tiny_checkpoint: Path, model: str) -> Iterator[EngineProcess]:
    """An engine of this module's own, so freezing it never stalls the session's shared engine."""
    root = Path(__file__).resolve().parents[3]
    with (root / ".cache" / "test-engine-frozen.log").open("w") as log:

        def sink(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        config = EngineConfig(
            model_dir=tiny_checkpoint,
            served_model_name=model,
            port=free_port(),
            max_model_len=512,
            kv_cache_gib=0.25,
            tool_call_parser=None,
        )
        with EngineProcess(config, log_sink=sink, startup_timeout=900) as process:
            yield process


def descendants(pid: int) -> list[int]:
    """The engine's worker processes (vLLM's EngineCore): freezing them leaves the API server up."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = (task / "children").read_text().split()
            for child in map(int, children):
                found.append(child)
                pending.append(child)
    return found


def test_a_frozen_engine_turns_readyz_red_then_green(
    spare_engine: EngineProcess, gateway_settings: Callable[..., Settings]
) -> None:
    """A gateway in front of the spare engine; its engine core is frozen with SIGSTOP (the API server
    keeps answering /health), and /readyz?engines=1 must say so within one interval plus one timeout;
    the gateway itself stays ready (/readyz), answering inference with 503 envelopes."""
    assert spare_engine.pid is not None
    workers = descendants(spare_engine.pid) or [spare_engine.pid]
    settings = gateway_settings(
        engine_url=spare_engine.base_url,
        health_interval_s=INTERVAL_S,
        health_timeout_s=TIMEOUT_S,
        health_deep=True,
    )
    with ThreadedServer(create_app(settings)) as server, httpx.Client(base_url=server.url) as http:

        def readyz_until(status: int, within_s: float) -> dict[str, Any]:
            """/readyz?engines=1's body once it answers `status`; fails after `within_s`."""
            started = time.monotonic()
            while (answer := http.get("/readyz?engines=1")).status_code != status:
                assert time.monotonic() - started < within_s, answer.text
                time.sleep(0.05)
            return dict(answer.json())

        readyz_until(200, within_s=60)
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            # The API server still answers /health: only the one-token generation sees the hang.
            assert httpx.get(spare_engine.base_url + "/health", timeout=5).status_code == 200
            error = readyz_until(503, within_s=INTERVAL_S + TIMEOUT_S + 2)["error"]
            assert (error["type"], error["code"]) == ("server_error", "not_ready")
            assert "no healthy upstream serves the default model" in error["message"]
            assert "engine: no answer within" in error["message"]
            assert http.get("/livez").status_code == 200  # alive, only its engine is not ready
            assert http.get("/readyz").status_code == 200  # the gateway stays in its Service
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        body = readyz_until(200, within_s=INTERVAL_S + TIMEOUT_S + 30)
        assert body["status"] == "ready" and body["upstreams"]["engine"]["healthy"]
