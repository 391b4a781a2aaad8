"""Running real servers for tests: the gateway under uvicorn on a background thread, and vLLM
engines as child processes with their logs in files."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from engine.launcher import EngineConfig, EngineProcess


@contextlib.contextmanager
def logged_engine(config: EngineConfig, log_path: Path) -> Iterator[EngineProcess]:
    """A healthy vLLM engine for `config`, its output in `log_path` (read it when a test fails)."""
    with log_path.open("w") as log:

        def sink(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        with EngineProcess(config, log_sink=sink, startup_timeout=900) as process:
            yield process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """uvicorn serving `app` on 127.0.0.1 from a daemon thread, so sync clients can call it."""

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
