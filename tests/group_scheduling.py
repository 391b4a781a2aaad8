"""The controller's scheduler for `make test`'s workers (tests/parallel.py says why): whole groups,
largest first, and the groups that run vLLM engines side by side only within a memory budget."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

ENGINE_BUDGET = 4
"""Engines (by the groups' weights, tests/parallel.py) that may run at once on the workers: the
session's big group (four engines) runs alone, two groups of two side by side."""

MIN_AVAILABLE_GIB = float(os.environ.get("TANTRA_TEST_MIN_AVAILABLE_GIB", "13"))
"""An engine group starts beside another only while the host has this much memory available:
engines of a group just finished may still be stopping, and weights are estimates."""


def available_gib() -> float:
    """MemAvailable from /proc/meminfo (infinite where there is none: the weights alone decide)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


class GroupScheduling(LoadScopeScheduling):
    """Scopes are the groups the workers wrote (a test missing there is a group of its own)."""

    def __init__(
        self, config: pytest.Config, log: Any, groups_file: Path, available: Any = available_gib
    ) -> None:
        super().__init__(config, log)
        self._groups_file = groups_file
        self._groups: dict[str, str] | None = None
        self._weights: dict[str, int] = {}
        self._available = available
        self._waiting: set[Any] = set()

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:
            written = json.loads(self._groups_file.read_text())
            self._groups = written["groups"]
            self._weights = written["engine_groups"]
        return self._groups.get(nodeid, nodeid)

    def _engine_load(self, apart_from: Any) -> int:
        """The weight of the engine groups other nodes are in, with tests still to run (a node's last
        test counts as done: a worker holds its last test until it is given more work or told to
        stop)."""
        return sum(
            self._weights[scope]
            for node, assigned in self.assigned_work.items()
            if node is not apart_from
            for scope, work in assigned.items()
            if scope in self._weights and list(work.values()).count(False) >= 2
        )

    def _fits(self, scope: str, load: int) -> bool:
        if scope not in self._weights or not load:
            return True
        return load + self._weights[scope] <= ENGINE_BUDGET and self._available() >= MIN_AVAILABLE_GIB

    def _holds_engines(self, node: Any) -> bool:
        """Whether the node's unfinished work (its held last test) belongs to an engine group, whose
        engines stay up until that test is run."""
        return any(
            scope in self._weights and not all(work.values())
            for scope, work in self.assigned_work.get(node, {}).items()
        )

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        """As xdist's, and then a node left waiting for room is offered work again: the test that
        just ended may have finished the group that kept it waiting."""
        super().mark_test_complete(node, item_index, duration)
        for other in list(self._waiting):
            if other is not node:
                self._reschedule(other)

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            self._waiting.discard(node)
        super()._reschedule(node)

    def _assign_work_unit(self, node: Any) -> None:
        """The first group in the queue that fits beside what the other nodes run: any group that
        starts no engines, an engine group within the budget. When none fits, the node waits for
        the other's next finished test, unless its own held test belongs to an engine group: that
        node is told to stop (it runs that test, whose group's engines then stop, and leaves the
        rest to the other node) rather than keep engines up while it waits. xdist has no timer to
        come back to a node given nothing, so a waiting node is offered work again each time
        another node finishes a test (mark_test_complete)."""
        load = self._engine_load(node)
        scope = next((s for s in self.workqueue if self._fits(s, load)), None)
        if scope is None:
            if self._holds_engines(node):
                self._waiting.discard(node)
                node.shutdown()
            else:
                self._waiting.add(node)
            return
        self._waiting.discard(node)
        work = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in work.items() if not done])
