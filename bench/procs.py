"""Server child processes for a run: started pinned to chosen cores, polled until ready, always stopped.

Each server runs in its own process group so stopping it also stops anything it
forked (vLLM's engine core, gunicorn workers). CPU seconds are read from the whole
process tree, which is how the report shows who is busy at each load level.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


class ServiceError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


class Service:
    """One server child: `start`, `wait_ready`, `stop`; a context manager does all three."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cpus: Sequence[int] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cpus = list(cpus) if cpus else None
        self.cwd = cwd
        self.ready_timeout_s = ready_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cpus = self.cpus
        prctl = _prctl()

        def pin() -> None:
            # Die with the benchmark: a killed run must not leave servers holding cores.
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if cpus:
                os.sched_setaffinity(0, cpus)

        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pin,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        proc = self._proc
        assert proc is not None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {proc.returncode}:\n{self.log_tail()}")
            if _answers(self.ready_url):
                return
            time.sleep(0.2)
        raise ServiceError(f"{self.name} was not ready in {self.ready_timeout_s:.0f}s:\n{self.log_tail()}")

    def revive(self) -> int | None:
        """Start the server again if it has exited; returns the exit code it had, or None if alive."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return None
        code = proc.returncode
        self.start()
        self.wait_ready()
        return code

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server and every process it started."""
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Service:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent so the forked child loads nothing before exec."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _answers(url: str) -> bool:
    """200 from an HTTP URL, or an accepted connection for `tcp://host:port` (Redis)."""
    if url.startswith("tcp://"):
        host, _, port = url[len("tcp://") :].rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return True
        except OSError:
            return False
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def serving_in_thread(app: Any, start_timeout_s: float = 60.0) -> Iterator[str]:
    """An ASGI app under uvicorn on a daemon thread of this process (a fake upstream, or a gateway
    measured in process); yields its URL and stops it on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
