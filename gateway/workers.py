"""Several gateway processes on one host (TANTRA_WORKERS): a supervisor and its worker processes.

Why a parent that binds and children that inherit, rather than SO_REUSEPORT sockets per process:
the parent binds the API and operator ports once and hands both sockets to every child, so the
children share one accept queue per port. A child that dies loses no queued connection (with
SO_REUSEPORT the kernel hashes each connection to one process's own queue, and that queue dies
with it), the port never closes while a child restarts, and no stray second gateway can join the
port unnoticed. Each child builds the app with the one app factory and runs the same
`DrainingServer` as a single process (gateway/serving.py), so SIGTERM drains every child's
streams, the operator listener is told apart by port as before, and /readyz is each child's own.

What must happen once per host happens in the parent or in worker 0 only: the parent migrates the
database before any child starts; only worker 0 runs the durable job runner and creates the
bootstrap admin owner. The worker pools (media, speech, screening, moderation) are split between
the children, so the host runs what the settings say (at least one per child). What is shared
between processes already lives in Redis and the store, which is why more than one worker needs a
Redis server: per-process limits (`memory://`) would multiply every key's limits by the count.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from gateway.clients import IN_PROCESS_REDIS
from gateway.observability.multiprocess import MetricsDirectory
from gateway.serving import bind, serve
from gateway.settings.load import load_settings
from gateway.settings.schema import Settings
from gateway.store import Database

_log = logging.getLogger("gateway.workers")

# The worker pools split between the processes (each at least one).
POOL_SETTINGS = (
    "media_workers",
    "audio_workers",
    "audio_diarization_workers",
    "audio_analysis_workers",
    "screen_workers",
    "moderation_workers",
)
# A child that ran this long before dying is restarted at once; sooner, after a growing pause
# (a child that cannot start must not spin the CPU).
_STABLE_S = 10.0
_MAX_BACKOFF_S = 30.0


def refusal(settings: Settings, count: int) -> str | None:
    """Why `count` workers cannot serve these settings, or None."""
    if count > 1 and settings.redis_url.startswith(IN_PROCESS_REDIS):
        return (
            f"workers (TANTRA_WORKERS): {count} worker processes need a Redis server (TANTRA_REDIS_URL); "
            f"with {IN_PROCESS_REDIS} each process would keep its own limits and allow every key "
            f"{count} times its limits. Set TANTRA_REDIS_URL, or TANTRA_WORKERS=1."
        )
    return None


def worker_settings(settings: Settings, index: int, count: int) -> Settings:
    """Worker `index`'s settings among `count`: its share of each pool, no migration (the parent
    ran it), and the once-per-host duties on worker 0 only."""
    update: dict[str, Any] = {name: _share(getattr(settings, name), index, count) for name in POOL_SETTINGS}
    update["database_auto_migrate"] = False
    if index != 0:
        update.update(jobs_enabled=False, admin_bootstrap_user=None)
    return settings.model_copy(update=update)


def _share(total: int, index: int, count: int) -> int:
    return max(1, total // count + (1 if index < total % count else 0))


def run(settings: Settings, count: int) -> int:
    """Migrate once, bind the ports, start `count` workers and supervise them until a signal;
    the exit status is 0 when every worker stopped cleanly."""
    if settings.database_auto_migrate:
        asyncio.run(_migrate(settings.database_url))
    sockets = bind(settings)
    metrics = MetricsDirectory.prepare()
    supervisor = Supervisor(count, sockets, metrics)
    try:
        return supervisor.run()
    finally:
        for listening in sockets:
            listening.close()
        metrics.remove()


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.migrate()
    finally:
        await database.close()


def _child(index: int, count: int, sockets: list[socket.socket], metrics_dir: str) -> None:
    """A worker process: the settings read again from the same environment, then served."""
    # Signals reach the workers through the supervisor only (a terminal's Ctrl-C too), so each
    # gets exactly one; a worker whose supervisor died drains and exits on its own. The
    # supervisor's own handlers, inherited by the fork, are not the worker's.
    os.setpgid(0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    _watch_parent(os.getppid())
    settings = worker_settings(load_settings(Settings), index, count)
    serve(settings, sockets, worker=index, metrics_dir=metrics_dir)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@dataclass
class _Slot:
    index: int
    process: BaseProcess
    started: float
    failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Starts the workers, restarts one that dies, and passes SIGTERM and SIGINT on to all."""

    count: int
    sockets: list[socket.socket]
    metrics: MetricsDirectory
    _slots: list[_Slot] = field(default_factory=list)
    _stopping: int | None = None
    _signalled: set[int] = field(default_factory=set)
    # Forked, not spawned: a worker starts (and restarts) from the supervisor's imported modules in
    # a second or so instead of importing the gateway again, and shares their pages. The
    # supervisor runs no thread and no event loop when it forks.
    _context: Any = field(default_factory=lambda: multiprocessing.get_context("fork"))

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._slots = [_Slot(i, self._start(i), time.monotonic()) for i in range(self.count)]
        _log.info("started %d gateway workers", self.count)
        while self._stopping is None:
            self._supervise()
        return self._join()

    def _start(self, index: int) -> BaseProcess:
        process = self._context.Process(
            target=_child,
            args=(index, self.count, self.sockets, self.metrics.path),
            name=f"tantra-worker-{index}",
        )
        process.start()
        return process

    def _supervise(self) -> None:
        alive = [slot.process.sentinel for slot in self._slots if slot.restart_at is None]
        wait(alive, timeout=0.5)
        now = time.monotonic()
        for slot in self._slots:
            if self._stopping is not None:
                return
            if slot.restart_at is None and not slot.process.is_alive():
                self._schedule_restart(slot, now)
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.process, slot.started, slot.restart_at = self._start(slot.index), now, None

    def _schedule_restart(self, slot: _Slot, now: float) -> None:
        if slot.process.pid is not None:
            self.metrics.process_dead(slot.process.pid)
        slot.failures = 0 if now - slot.started >= _STABLE_S else slot.failures + 1
        pause = 0.0 if slot.failures == 0 else min(_MAX_BACKOFF_S, 2.0 ** (slot.failures - 1))
        _log.warning(
            "gateway worker %d (pid %s) exited with %s; restarting it in %.0f s",
            slot.index,
            slot.process.pid,
            slot.process.exitcode,
            pause,
        )
        slot.restart_at = now + pause

    def _on_signal(self, sig: int, _: FrameType | None) -> None:
        # Every signal is passed on: the first SIGTERM drains each worker, a second ends them now.
        again = self._stopping is not None
        self._stopping = sig
        self._forward(sig, again=again)

    def _forward(self, sig: int, *, again: bool) -> None:
        for slot in self._slots:
            pid = slot.process.pid
            if pid is None or slot.restart_at is not None or not slot.process.is_alive():
                continue
            if again or pid not in self._signalled:
                self._signalled.add(pid)
                os.kill(pid, sig)

    def _join(self) -> int:
        if self._stopping is not None:  # a worker started while the signal was being handled
            self._forward(self._stopping, again=False)
        # uvicorn ends a worker by raising the signal it caught again once it has drained.
        clean = {0, -signal.SIGTERM, -signal.SIGINT}
        status = 0
        for slot in self._slots:
            if slot.restart_at is not None:
                continue
            while slot.process.is_alive():
                slot.process.join(0.5)  # signals still reach _on_signal between the waits
            if slot.process.exitcode not in clean:
                _log.warning("gateway worker %d exited with %s", slot.index, slot.process.exitcode)
                status = 1
        return status
