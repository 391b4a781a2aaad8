"""Running the suite on several pytest-xdist workers (`make test` runs two: `-n 2 --dist loadgroup`).

A group is what one worker must run alone: every test of a module (module-scoped fixtures start
once), and every test that shares an expensive session fixture, a vLLM engine above all (each
worker has its own session, so a shared engine split across workers would start once per worker).
The groups are the connected parts of the graph whose nodes are modules and expensive fixtures and
whose edges are the tests.

xdist's own `loadgroup` reads groups from node ids suffixed by its `xdist_group` mark, which pytest
9.2's node ids no longer carry (`Item.nodeid` is built from the structured id, not `_nodeid`), so
every test became a group of its own. Here each worker writes the groups it collected to a file the
controller named, and the controller's scheduler (xdist's `loadscope`, its scope taken from that
file) hands out whole groups, the largest first, to whichever worker is free.

Memory decides the rest. A vLLM engine here holds about 3 GB (its API server and engine core), the
session's engines five of them, and a module such as the quantized engines' starts three more: two
workers each running the session's engines ran CI's 24 GiB out (the kernel killed the session's
chat engine). So each group that runs engines ("engine groups": the `engine` mark, an expensive
fixture, or a module under a directory of vLLM tests) has a weight, the engines it may hold at once
(`engine_groups`), and engine groups run side by side only within a budget of four and while the
host has memory available (tests/group_scheduling.py): the session's big group, and modules that
must not share the CPU (the resilience replicas), run alone; two groups of two run together. While
none fits, a worker waits for the other's next finished test. A worker stops its session engines
when their group's last test is done (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

_GROUPS_FILE = "tantra_groups_file"
"""The key, in each worker's `workerinput`, of the file where it writes the suite's groups."""
_FILE_KEY = pytest.StashKey[Path]()


class _Parts:
    """Union-find over names (modules and fixtures), each part rooted at its smallest member."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        parent = self._parent.setdefault(name, name)
        if parent != name:
            parent = self._parent[name] = self.find(parent)
        return parent

    def join(self, a: str, b: str) -> None:
        first, second = sorted((self.find(a), self.find(b)))
        if first != second:
            self._parent[second] = first

    def members(self) -> dict[str, set[str]]:
        """Every part's names, by the part's root."""
        parts: dict[str, set[str]] = {}
        for name in list(self._parent):
            parts.setdefault(self.find(name), set()).add(name)
        return parts


def suite_groups(items: Iterable[pytest.Item], heavy: Collection[str]) -> dict[str, list[pytest.Item]]:
    """The suite's items by group name: the name joins the group's expensive fixtures, or is its
    (smallest) module's path when it has none. Deterministic for a given collection, as xdist needs
    (every worker collects the suite and must agree)."""
    parts = _Parts()
    listed: list[tuple[pytest.Item, str]] = []
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        parts.find(module)
        for name in getattr(item, "fixturenames", ()):
            if name in heavy:
                parts.join(module, "fixture:" + name)
        listed.append((item, module))
    names = {root: _group_name(members) for root, members in parts.members().items()}
    groups: dict[str, list[pytest.Item]] = {}
    for item, module in listed:
        groups.setdefault(names[parts.find(module)], []).append(item)
    return groups


def _group_name(members: Collection[str]) -> str:
    fixtures = sorted(m.removeprefix("fixture:") for m in members if m.startswith("fixture:"))
    return "+".join(fixtures) if fixtures else min(members)


def engine_groups(
    groups: Mapping[str, list[pytest.Item]],
    heavy: Collection[str],
    directories: Collection[str],
    not_engines: Collection[str] = (),
) -> dict[str, int]:
    """The groups that run vLLM engines, each with its weight: a test marked `engine`, one using an
    expensive fixture, or a module under one of `directories` (where modules start engines of their
    own, unmarked). The weight is how many engines the group may hold at once: its expensive
    fixtures that are engines (all of `heavy` but `not_engines`) plus the most any of its modules
    starts on its own (an `engines(n)` mark; none without), at least 2 (the scheduler's unit,
    tests/group_scheduling.py)."""
    weights = {}
    used = heavy_fixtures_of(groups, heavy)
    for name, items in groups.items():
        if not any(
            item.get_closest_marker("engine") is not None
            or any(f in heavy for f in getattr(item, "fixturenames", ()))
            or item.nodeid.startswith(tuple(directories))
            for item in items
        ):
            continue
        own = max((_engines_mark(item) for item in items), default=0)
        weights[name] = max(2, len(used[name] - set(not_engines)) + own)
    return weights


def _engines_mark(item: pytest.Item) -> int:
    mark = item.get_closest_marker("engines")
    return int(mark.args[0]) if mark is not None else 0


def heavy_fixtures_of(groups: Mapping[str, list[pytest.Item]], heavy: Collection[str]) -> dict[str, set[str]]:
    """Which of the expensive fixtures each group's tests use."""
    return {
        name: {f for item in items for f in getattr(item, "fixturenames", ()) if f in heavy}
        for name, items in groups.items()
    }


def xdist_worker(config: pytest.Config) -> bool:
    """Whether this process is one of xdist's workers (the controller collects nothing)."""
    return hasattr(config, "workerinput")


def publish_groups(
    config: pytest.Config, groups: Mapping[str, list[pytest.Item]], engines: Mapping[str, int]
) -> None:
    """On a worker, write the node ids' groups and the engine groups where the controller's scheduler
    reads them (every worker writes the same content; each replaces the file whole)."""
    target = getattr(config, "workerinput", {}).get(_GROUPS_FILE)
    if not target:
        return
    content = json.dumps(
        {
            "groups": {item.nodeid: name for name, items in groups.items() for item in items},
            "engine_groups": dict(sorted(engines.items())),
        }
    )
    fd, partial = tempfile.mkstemp(dir=Path(target).parent, prefix=".groups-")
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(partial, target)


def _grouped(config: pytest.Config) -> bool:
    return bool(config.getoption("numprocesses", None)) and config.getoption("dist", "no") == "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Name, for each worker, the file its collection's groups go to (one file per run)."""
    config = node.config
    if not _grouped(config):
        return
    path = config.stash.setdefault(_FILE_KEY, Path(tempfile.mkdtemp(prefix="tantra-groups-")) / "groups.json")
    node.workerinput[_GROUPS_FILE] = str(path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`: xdist's loadscope scheduler over this suite's groups, engine groups in
    turn (tests/group_scheduling.py; imported here, where xdist is known to be installed)."""
    if not _grouped(config):
        return None
    from tests.group_scheduling import GroupScheduling

    return GroupScheduling(config, log, config.stash[_FILE_KEY])


_SPANS_KEY = pytest.StashKey[dict[str, list[float]]]()
_WORKERS_KEY = pytest.StashKey[dict[str, str]]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On the controller, each test's worker, first start and last stop (setup to teardown), for
    the schedule summary below."""
    node = getattr(report, "node", None)
    if node is None:
        return
    spans = node.config.stash.setdefault(_SPANS_KEY, {})
    span = spans.setdefault(report.nodeid, [report.start, report.stop, 0.0])
    span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)
    span[2] += report.duration
    node.config.stash.setdefault(_WORKERS_KEY, {})[report.nodeid] = node.gateway.id


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The schedule's critical path, printed at the end of a grouped run and kept in pytest's cache
    (`tantra/schedule`): each group's worker, start (seconds from the first test) and wall time, so
    that a slow CI run shows which groups made it slow."""
    spans, path = config.stash.get(_SPANS_KEY, None), config.stash.get(_FILE_KEY, None)
    if not spans or path is None or not path.exists():
        return
    groups: dict[str, str] = json.loads(path.read_text())["groups"]
    workers = config.stash[_WORKERS_KEY]
    origin = min(start for start, _, _ in spans.values())
    rows: dict[str, list[Any]] = {}
    for nodeid, (start, stop, busy) in spans.items():
        row = rows.setdefault(groups.get(nodeid, nodeid), [workers[nodeid], start, stop, 0.0, 0])
        row[1], row[2], row[3], row[4] = min(row[1], start), max(row[2], stop), row[3] + busy, row[4] + 1
    table = sorted(
        (
            {
                "group": g,
                "worker": w,
                "start_s": round(a - origin),
                "wall_s": round(b - a),
                "busy_s": round(c),
                "tests": n,
            }
            for g, (w, a, b, c, n) in rows.items()
        ),
        key=lambda row: row["start_s"],
    )
    if config.cache is not None:
        config.cache.set("tantra/schedule", table)
    write = terminalreporter.write_line
    terminalreporter.section("schedule (groups of 60 s or more)")
    for worker in sorted({row["worker"] for row in table}):
        own = [row for row in table if row["worker"] == worker]
        write(
            f"{worker}: {len(own)} groups, {sum(r['busy_s'] for r in own)} s in tests, last end "
            f"{max(r['start_s'] + r['wall_s'] for r in own)} s"
        )
    for entry in table:
        if entry["wall_s"] >= 60:
            at, wall = f"{entry['start_s']:>5} s", f"+{entry['wall_s']:>4} s"
            write(f"{entry['worker']} {at} {wall} {entry['tests']:>4} tests  {entry['group']}")


def pytest_unconfigure(config: pytest.Config) -> None:
    path = config.stash.get(_FILE_KEY, None)
    if path is not None:
        shutil.rmtree(path.parent, ignore_errors=True)
