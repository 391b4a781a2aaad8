"""Keep a vLLM server up: restart it when it dies, with backoff, on the same address.

The gateway's pool notices the death on its own (refused connections, torn streams open the
upstream's breaker) and the return (its background probe half-opens the breaker once /health
answers), so the restarted engine rejoins without anyone telling the gateway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.launcher import EngineConfig, EngineProcess, EngineStartError, LogSink, stderr_sink

__all__ = ["EngineSupervisor"]


class EngineSupervisor:
    """Runs one EngineProcess from a watcher thread and starts a new one whenever it exits.

    Backoff doubles from `backoff_s` to `backoff_max_s` for engines that keep dying, and starts
    again from `backoff_s` once an engine has stayed up for `stable_s`. `on_event(kind, detail)`
    hears "started", "healthy", "exited" and "start_failed" (logs, metrics, tests).
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        log_sink: LogSink | None = stderr_sink,
        startup_timeout: float = 600.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        stable_s: float = 60.0,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self._sink = log_sink
        self._startup_timeout = startup_timeout
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._stable_s = stable_s
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.process: EngineProcess | None = None
        self.restarts = 0
        self.healthy = threading.Event()

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None else None

    def start(self, wait: bool = True) -> None:
        """Start the engine and its watcher; with `wait`, return once it is first healthy."""
        self._thread = threading.Thread(target=self._watch, name=f"engine-supervisor-{self.config.port}")
        self._thread.daemon = True
        self._thread.start()
        if wait and not self.healthy.wait(self._startup_timeout):
            self.stop()
            raise EngineStartError(f"engine on port {self.config.port} did not become healthy")

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self.process is not None:
                self.process.stop()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def __enter__(self) -> EngineSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _event(self, kind: str, detail: str = "") -> None:
        if self._on_event is not None:
            self._on_event(kind, detail)

    def _watch(self) -> None:
        backoff = self._backoff_s
        while not self._stop.is_set():
            process = self._spawn()
            if process is not None:
                up_since = time.monotonic()
                while process.running and not self._stop.wait(0.2):
                    pass
                if self._stop.is_set():
                    return
                self.healthy.clear()
                self._event("exited", str(process.returncode))
                process.stop()  # the engine-core worker may outlive the server: clear the group
                if time.monotonic() - up_since >= self._stable_s:
                    backoff = self._backoff_s
            self.restarts += 1
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._backoff_max_s)

    def _spawn(self) -> EngineProcess | None:
        """A new engine, healthy; None (and nothing left running) when it would not start."""
        with self._lock:
            if self._stop.is_set():
                return None
            process = EngineProcess(
                self.config,
                log_sink=self._sink,
                startup_timeout=self._startup_timeout,
                kill_on_parent_exit=True,  # tied to this thread, which lives as long as the supervisor
            )
            self.process = process
            try:
                process.start()
            except EngineStartError as exc:
                self._event("start_failed", exc.reason)
                return None
        self._event("started", str(process.pid))
        try:
            process.wait_healthy()
        except EngineStartError as exc:
            self._event("start_failed", exc.reason)
            process.stop()
            return None
        self.healthy.set()
        self._event("healthy", str(process.pid))
        return process
