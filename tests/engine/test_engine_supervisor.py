"""EngineSupervisor: a killed engine comes back on the same port, with backoff (fake vLLM)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from engine.launcher import EngineConfig
from engine.supervisor import EngineSupervisor
from tests.engine.helpers import fake_python, free_port, model_dir, pid_alive, wait_gone


def test_a_killed_engine_is_restarted_on_the_same_port(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []
    config = EngineConfig(
        model_dir=model_dir(tmp_path),
        served_model_name="fake",
        port=free_port(),
        python=str(fake_python(tmp_path)),
    )
    supervisor = EngineSupervisor(
        config,
        log_sink=None,
        startup_timeout=30,
        backoff_s=0.2,
        on_event=lambda kind, detail: events.append((kind, detail)),
    )
    with supervisor:
        first = supervisor.pid
        assert first is not None and supervisor.process is not None and supervisor.process.is_healthy()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (supervisor.restarts >= 1 and supervisor.healthy.is_set() and supervisor.pid != first):
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
        assert supervisor.process.is_healthy()
        second = supervisor.pid
    assert [kind for kind, _ in events] == ["started", "healthy", "exited", "started", "healthy"]
    assert second is not None and wait_gone(second) and not pid_alive(first)
