"""The controller's scheduler for `make test`'s workers (tests/parallel.py says why): whole groups,
largest first, and the groups that run vLLM engines one at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling


class GroupScheduling(LoadScopeScheduling):
    """Scopes are the groups the workers wrote (a test missing there is a group of its own)."""

    def __init__(self, config: pytest.Config, log: Any, groups_file: Path) -> None:
        super().__init__(config, log)
        self._groups_file = groups_file
        self._groups: dict[str, str] | None = None
        self._engine_groups: frozenset[str] = frozenset()

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

    def _assign_work_unit(self, node: Any) -> None:
        """The first group in the queue this node may run now: any group while no other node runs
        an engine group, else the first group that starts no engines. When only engine groups are
        left and another node runs one, this node is told to stop: it runs the test it holds (a
        worker keeps its last test until it gets more work or is stopped, so a node merely left
        waiting would keep that test's engines alive) and leaves the rest to the other node.
        xdist has no timer to come back to a node given nothing, so nothing is not an answer."""
        engines_allowed = not self._engines_running(node)
        scope = next((s for s in self.workqueue if s not in self._engine_groups or engines_allowed), None)
        if scope is None:
            node.shutdown()
            return
        work = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in work.items() if not done])
