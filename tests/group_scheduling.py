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
        return any(
            scope in self._engine_groups and not all(work.values())
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
        """The first group in the queue this node may run now; none (the node waits for the
        next finished test anywhere) when only engine groups are left and they must wait."""
        engines_allowed = self._may_start_engines(node)
        for scope in self.workqueue:
            if scope not in self._engine_groups or engines_allowed:
                break
        else:
            return
        work = self.workqueue.pop(scope)
        if scope in self._engine_groups:
            self._engines_began = time.monotonic()
        self.assigned_work.setdefault(node, {})[scope] = work
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in work.items() if not done])

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        super().mark_test_complete(node, item_index, duration)
        for other in self.nodes:  # a waiting worker may go on now
            if other is not node and not other.shutting_down and self.workqueue:
                self._reschedule(other)
