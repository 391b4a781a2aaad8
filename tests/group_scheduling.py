"""The controller's scheduler for `make test`'s workers (tests/parallel.py says why): whole groups,
largest first, and the groups that run vLLM engines in turn unless memory allows two."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

PARALLEL_ENGINES_FREE_GIB = 12.0
"""MemAvailable a second engine group needs to start beside a running one: room for four engines."""
ENGINE_START_S = 120.0
"""How long an engine group's engines take to start and show in MemAvailable (two at once, loaded)."""


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0


class GroupScheduling(LoadScopeScheduling):
    """Scopes are the groups the workers wrote (a test missing there is a group of its own)."""

    def __init__(self, config: pytest.Config, log: Any, groups_file: Path) -> None:
        super().__init__(config, log)
        self._groups_file = groups_file
        self._groups: dict[str, str] | None = None
        self._engine_groups: frozenset[str] = frozenset()
        self._engines_began = 0.0

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:
            written = json.loads(self._groups_file.read_text())
            self._groups = written["groups"]
            self._engine_groups = frozenset(written["engine_groups"])
        return self._groups.get(nodeid, nodeid)

    def _engines_running(self, apart_from: Any) -> bool:
        """Whether another node is in an engine group with tests still to run (its last test counts
        as done: a worker holds its last test until it is given more work or told to stop)."""
        return any(
            scope in self._engine_groups and list(work.values()).count(False) >= 2
            for node, assigned in self.assigned_work.items()
            if node is not apart_from
            for scope, work in assigned.items()
        )

    def _may_start_engines(self, node: Any) -> bool:
        if not self._engines_running(node):
            return True
        settled = time.monotonic() - self._engines_began >= ENGINE_START_S
        return settled and _available_gib() >= PARALLEL_ENGINES_FREE_GIB

    def _assign_work_unit(self, node: Any) -> None:
        """The first group in the queue this node may run now, else the first group: a node that
        asks is never left without work while there is some (xdist has no timer to come back to a
        refused node, and a worker holding its last test would wait for ever). So two engine groups
        run at once only when memory allows or when nothing but engine groups is left."""
        engines_allowed = self._may_start_engines(node)
        scope = next(
            (s for s in self.workqueue if s not in self._engine_groups or engines_allowed),
            next(iter(self.workqueue)),
        )
        work = self.workqueue.pop(scope)
        if scope in self._engine_groups:
            self._engines_began = time.monotonic()
        self.assigned_work.setdefault(node, {})[scope] = work
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in work.items() if not done])
