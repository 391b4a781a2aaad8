"""The workers' scheduler (tests/group_scheduling.py), driven by simulated xdist workers: every test
runs once, engine groups side by side stay within the budget and the memory floor, and a worker
left without a group that fits waits for one instead of leaving the rest to the other."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.group_scheduling import ENGINE_BUDGET, GroupScheduling


class Worker:
    """An xdist worker as the scheduler sees it: it runs a test only once it holds the next one (or
    is shutting down), as xdist's workers do."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.queue: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.queue += indices

    def shutdown(self) -> None:
        self.shutting_down = True

    def runnable(self) -> bool:
        return len(self.queue) >= 2 or (self.shutting_down and bool(self.queue))


def _scheduler(tmp_path: Path, groups: dict[str, list[str]], weights: dict[str, int], memory: Any) -> Any:
    path = tmp_path / "groups.json"
    by_test = {test: group for group, tests in groups.items() for test in tests}
    path.write_text(json.dumps({"groups": by_test, "engine_groups": weights}))
    config = SimpleNamespace(getvalue=lambda name: ["2*popen"], option=SimpleNamespace(loadscopereorder=True))
    return GroupScheduling(config, None, path, available=memory)  # type: ignore[arg-type]


def _run(
    tmp_path: Path, groups: dict[str, list[str]], weights: dict[str, int], memory: Any = lambda: 20.0
) -> tuple[list[tuple[str, str]], int]:
    """Run the suite to its end, one test at a time, the workers in turn; returns the order of
    (worker, group) as tests ran and the largest engine weight up at once."""
    scheduler = _scheduler(tmp_path, groups, weights, memory)
    collection = [test for tests in groups.values() for test in tests]
    group_of = {test: group for group, tests in groups.items() for test in tests}
    workers = [Worker("gw0"), Worker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    ran: list[tuple[str, str]] = []
    left = {group: len(tests) for group, tests in groups.items()}
    started: set[str] = set()
    peak = 0
    for _ in range(10 * len(collection)):
        busy = [w for w in workers if w.runnable()]
        if not busy:
            break
        for worker in busy:
            index = worker.queue.pop(0)
            group = group_of[collection[index]]
            started.add(group)
            up = sum(weights.get(g, 0) for g in started if left[g])
            peak = max(peak, up)
            left[group] -= 1
            ran.append((worker.gateway.id, group))
            scheduler.mark_test_complete(worker, index)
    assert sorted(test for _, test in ran) == sorted(group_of[t] for t in collection)  # each test once
    return ran, peak


def _suite() -> tuple[dict[str, list[str]], dict[str, int]]:
    groups = {
        "big": [f"tests/big.py::t{i}" for i in range(30)],
        "lora": [f"tests/lora.py::t{i}" for i in range(8)],
        "replicas": [f"tests/replicas.py::t{i}" for i in range(6)],
        "units": [f"tests/units.py::t{i}" for i in range(5)],
        "quantize": [f"tests/quantize.py::t{i}" for i in range(4)],
    }
    return groups, {"big": 4, "lora": 2, "replicas": 2, "quantize": 3}


def test_engine_groups_share_the_workers_within_the_budget(tmp_path: Path) -> None:
    groups, weights = _suite()
    ran, peak = _run(tmp_path, groups, weights)
    assert peak <= ENGINE_BUDGET
    workers_of = {group: {worker for worker, g in ran if g == group} for group in groups}
    assert all(len(workers) == 1 for workers in workers_of.values())  # a group never splits
    # The two groups of two ran side by side, on both workers, after the big group.
    assert workers_of["lora"] != workers_of["replicas"]


def test_without_memory_available_engine_groups_take_turns(tmp_path: Path) -> None:
    groups, weights = _suite()
    _, peak = _run(tmp_path, groups, weights, memory=lambda: 2.0)
    assert peak == max(weights.values())  # never two engine groups up at once
