"""One /metrics for all worker processes of a host (TANTRA_WORKERS above 1).

Each worker keeps its metrics in prometheus-client's multiprocess files (one directory per host,
one file per process and kind), and any worker's /metrics reads all of them: a scrape that lands on
either worker sees the pod's totals, and a worker's counters outlive its restart, as a Prometheus
counter must. Gauges say how they combine across processes (gateway/observability/metrics.py:
`livesum` for what is in flight, `max` for a breaker's worst state, ...).

The supervisor prepares the directory before it forks (the operator's PROMETHEUS_MULTIPROC_DIR, or
a fresh temporary one it removes at exit) and tells the library when a worker dies, so that the
live gauges drop what it held. A single-process gateway never comes here: its registry is its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, multiprocess, values
from prometheus_client.exposition import generate_latest

ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class MetricsDirectory:
    """The host's multiprocess directory, as the supervisor prepared it."""

    path: str
    owned: bool  # created here (removed at exit), not the operator's

    @classmethod
    def prepare(cls) -> MetricsDirectory:
        """Before the workers fork: a directory with no file of an earlier run (a stale file would
        add a dead process's counters to this one's), named in the environment the workers inherit."""
        given = os.environ.get(ENV)
        path = given or tempfile.mkdtemp(prefix="tantra-metrics-")
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
        os.environ[ENV] = path
        return cls(path, owned=given is None)

    def process_dead(self, pid: int) -> None:
        """A worker exited: its live gauges (requests in flight, ...) no longer count."""
        multiprocess.mark_process_dead(pid, self.path)

    def remove(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def enable(path: str) -> None:
    """In a worker, before its app creates any metric: values go to the shared files. The value
    class is prometheus-client's one global (it picks it when first imported, which the supervisor
    did before the environment named the directory)."""
    os.environ[ENV] = path
    values.ValueClass = values.MultiProcessValue()


def render(path: str) -> bytes:
    """Every worker's metrics, combined as each metric says."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)
