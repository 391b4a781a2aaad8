"""Running real servers for tests: the gateway under uvicorn on a background thread, and vLLM
engines as child processes with their logs in files."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import uvicorn
from starlette.types import ASGIApp

from engine.launcher import EngineConfig, EngineProcess

_prestarted: dict[Path, tuple[EngineProcess, IO[str]]] = {}
"""Engines spawned before their first test, by log path (one per engine)."""


def _spawn(config: EngineConfig, log_path: Path) -> tuple[EngineProcess, IO[str]]:
    if config.cpu_cores is None and config.device == "cpu":
        # One process fewer per engine: about 20 s of every start, and its memory (EngineConfig).
        config = dataclasses.replace(config, worker_in_process=True)
    log = log_path.open("w")

    def sink(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    return EngineProcess(config, log_sink=sink, startup_timeout=900), log


def prestart_engine(config: EngineConfig, log_path: Path) -> None:
    """Spawn the engine now without waiting for it: `logged_engine` of the same log path takes it.
    The session's engines start while the first tests run: a vLLM start is about a minute of one busy
    core, and the tests in this process mostly keep only the other one busy."""
    if log_path in _prestarted:
        return
    process, log = _spawn(config, log_path)
    try:
        process.start()
    except BaseException:
        log.close()
        raise
    _prestarted[log_path] = (process, log)


def stop_prestarted() -> None:
    """Stop the engines spawned for tests that never ran (deselected, skipped, failed earlier)."""
    for log_path in list(_prestarted):
        stop_engine(log_path)


@contextlib.contextmanager
def logged_engine(config: EngineConfig, log_path: Path) -> Iterator[EngineProcess]:
    """A healthy vLLM engine, its output in `log_path` (read it when a test fails): the one
    `prestart_engine` spawned for that log path (from the same config), or one started now."""
    process, log = _prestarted.pop(log_path) if log_path in _prestarted else _spawn(config, log_path)
    with log:
        if process.pid is None:
            process.start()
        _live[log_path] = process
        try:
            process.wait_healthy()
            yield process
        finally:
            _live.pop(log_path, None)
            process.stop()


_live: dict[Path, EngineProcess] = {}
"""Engines `logged_engine` is serving, by log path."""


def stop_engine(log_path: Path) -> None:
    """Stop the engine `logged_engine` serves (or `prestart_engine` spawned) for `log_path` before its
    fixture ends: its last user is done and its memory is wanted (stopping twice is harmless)."""
    if log_path in _prestarted:
        process, log = _prestarted.pop(log_path)
        process.stop()
        log.close()
    if log_path in _live:
        _live[log_path].stop()


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
