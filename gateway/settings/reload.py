"""Live configuration: the active settings behind one reference, swapped whole on SIGHUP or when
the file changes.

A reload builds and validates a complete new Settings first; only then is the reference swapped,
so a request sees the old settings or the new ones, never a mix, and one already running (a
stream) keeps the snapshot it took when it began. A new configuration that fails validation is
refused with every problem logged, and the old one stays. Settings that only a restart can change
(the port, the database) are reported and left as they were.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic_settings import BaseSettings

from gateway.background import cancelled
from gateway.observability.metrics import GatewayMetrics
from gateway.settings.load import ConfigError, load_settings

S = TypeVar("S", bound=BaseSettings)
Listener = Callable[[Any, Any], None]

_log = logging.getLogger("tantra.config")


class LiveConfig(Generic[S]):
    """The settings in force. Read `current` once per request and keep that object."""

    def __init__(self, settings: S) -> None:
        self.current = settings
        self.generation = 0
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """`listener(old, new)` runs after each applied reload (on the event loop)."""
        self._listeners.append(listener)

    def swap(self, new: S) -> S:
        old, self.current = self.current, new
        self.generation += 1
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:
                _log.exception("a reload listener failed; the new settings are active regardless")
        return old


HISTORY = 50
"""Reloads remembered per replica, newest last (the panel's configuration page shows them)."""


@dataclass(frozen=True)
class ReloadRecord:
    """One reload: when, why (SIGHUP, the file changed, requested), whether it was applied, the
    settings it changed, those left for a restart, and a refused one's problems."""

    at: datetime
    reason: str
    outcome: str
    changed: list[str] = field(default_factory=list)
    restart_only: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class ConfigReloader(Generic[S]):
    """Reloads `live` from the environment and its YAML file, on SIGHUP or on a change of the file.

    `restart_only` names settings a running gateway cannot change; a reload that changes them
    applies everything else and says which need a restart. `overrides` are the constructor values
    the first settings were built with (tests), kept on every reload.
    """

    def __init__(
        self,
        live: LiveConfig[S],
        settings_cls: type[S],
        *,
        restart_only: Iterable[str] = (),
        poll_interval_s: float = 1.0,
        metrics: GatewayMetrics | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.live = live
        self._cls = settings_cls
        self._restart_only = frozenset(restart_only)
        self._poll_s = poll_interval_s
        self._metrics = metrics
        self._overrides = dict(overrides or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._previous_handler: Any = None
        self.last_error: ConfigError | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        self.history: deque[ReloadRecord] = deque(maxlen=HISTORY)

    @property
    def config_file(self) -> Path | None:
        path = getattr(self.live.current, "config_file", None)
        return Path(path) if path else None

    async def reload(self, reason: str = "requested") -> bool:
        """Validate and apply a new configuration; False (old one kept) when it is invalid."""
        async with self._lock:
            try:
                new = await asyncio.to_thread(lambda: load_settings(self._cls, **self._overrides))
            except ConfigError as exc:
                self.last_error = exc
                _log.error(
                    "configuration reload (%s) REJECTED, the previous configuration stays active: %s",
                    reason,
                    "; ".join(exc.problems),
                    extra={"problems": exc.problems},
                )
                self._count("rejected")
                self.history.append(ReloadRecord(_now(), reason, "rejected", problems=list(exc.problems)))
                return False
            self.last_error = None
            old = self.live.current
            changed = [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]
            frozen = [name for name in changed if name in self._restart_only]
            if frozen:
                kept = {name: getattr(old, name) for name in frozen}
                new = new.model_copy(update=kept)
                _log.warning("configuration reload: %s can change only with a restart", ", ".join(frozen))
            applied = [name for name in changed if name not in self._restart_only]
            if applied:
                self.live.swap(new)
            _log.info(
                "configuration reload (%s) applied: %s",
                reason,
                ", ".join(applied) or "nothing changed",
                extra={"changed": applied},
            )
            self._count("applied")
            self.history.append(ReloadRecord(_now(), reason, "applied", applied, frozen))
            return True

    def start(self) -> None:
        """Watch the file; call from the running loop (the app's lifespan)."""
        self._loop = asyncio.get_running_loop()
        if self._watch is None:
            seen = _fingerprint(self.config_file)
            self._watch = self._loop.create_task(self._poll(seen), name="tantra-config-watch")
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handler()

    def install_signal_handler(self) -> None:
        """SIGHUP reloads. Python runs signal handlers on the main thread only, so this must be
        called there; the handler hands the reload to the app's loop, whichever thread runs it."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("start() the reloader first")

        def on_sighup(_signum: int, _frame: Any) -> None:
            loop.call_soon_threadsafe(self._spawn_reload, "SIGHUP")

        self._previous_handler = signal.signal(signal.SIGHUP, on_sighup)

    def _spawn_reload(self, reason: str) -> None:
        # The loop keeps only weak references to tasks: hold this one until it is done.
        task = asyncio.get_running_loop().create_task(self.reload(reason))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        await cancelled(self._watch)
        self._watch = None

    async def _poll(self, seen: tuple[int, int, int] | None) -> None:
        """Stat the file every interval: cheap, and it follows Kubernetes' ConfigMap symlink swaps
        and editors that replace the file, which inotify on the old inode would miss."""
        while True:
            await asyncio.sleep(self._poll_s)
            now = _fingerprint(self.config_file)
            if now != seen:
                seen = now
                await self.reload("file changed")

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.config_reloads.labels(result).inc()


def _fingerprint(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)  # follows symlinks: a swapped target shows as a new inode
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
