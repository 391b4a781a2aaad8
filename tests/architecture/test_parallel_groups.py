"""The suite's worker groups (tests/parallel.py): a module never splits, and tests sharing an
expensive session fixture, directly or through another module, land in one group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest

from tests.parallel import engine_groups, heavy_fixtures_of, suite_groups

HEAVY = frozenset({"engine", "lora_engine", "vita_engine"})


@dataclass
class FakeItem:
    nodeid: str
    fixturenames: list[str] = field(default_factory=list)


def _groups(*items: FakeItem) -> dict[str, list[str]]:
    groups = suite_groups(cast(list[pytest.Item], items), HEAVY)
    return {name: [i.nodeid for i in members] for name, members in groups.items()}


def test_modules_stay_whole_and_shared_engines_join_their_modules() -> None:
    groups = _groups(
        FakeItem("tests/a.py::test_1", ["engine", "gateway_url"]),
        FakeItem("tests/a.py::test_2"),  # no engine itself, but its module has one
        FakeItem("tests/b.py::test_1", ["lora_engine"]),
        FakeItem("tests/b.py::test_2", ["engine", "lora_engine"]),  # joins a.py's engine and b.py's
        FakeItem("tests/c.py::test_1", ["redis_server"]),  # cheap fixtures do not join anything
        FakeItem("tests/d.py::test_1", ["redis_server"]),
        FakeItem("tests/e.py::test_1", ["vita_engine"]),
        FakeItem("tests/f.py::test_1", ["vita_engine"]),
    )
    assert groups == {
        "engine+lora_engine": [
            "tests/a.py::test_1",
            "tests/a.py::test_2",
            "tests/b.py::test_1",
            "tests/b.py::test_2",
        ],
        "tests/c.py": ["tests/c.py::test_1"],
        "tests/d.py": ["tests/d.py::test_1"],
        "vita_engine": ["tests/e.py::test_1", "tests/f.py::test_1"],
    }


def test_the_groups_do_not_depend_on_the_order_of_collection() -> None:
    items = [
        FakeItem("tests/z.py::test_1", ["engine"]),
        FakeItem("tests/y.py::test_1", ["lora_engine"]),
        FakeItem("tests/y.py::test_2", ["engine"]),
    ]
    forward = _groups(*items)
    backward = _groups(*reversed(items))
    assert {k: sorted(v) for k, v in forward.items()} == {k: sorted(v) for k, v in backward.items()}
    assert list(forward) == ["engine+lora_engine"]


def test_each_group_knows_the_expensive_fixtures_it_starts() -> None:
    items = [FakeItem("tests/a.py::test_1", ["engine"]), FakeItem("tests/b.py::test_1", ["vita_engine"])]
    groups = suite_groups(cast(list[pytest.Item], items), HEAVY)
    assert heavy_fixtures_of(groups, HEAVY) == {"engine": {"engine"}, "vita_engine": {"vita_engine"}}


@dataclass
class MarkedItem(FakeItem):
    marks: tuple[str, ...] = ()
    engines: int | None = None

    def get_closest_marker(self, name: str) -> object | None:
        if name == "engines":
            return None if self.engines is None else pytest.mark.engines(self.engines).mark
        return name if name in self.marks else None


def test_engine_groups_are_marked_use_an_engine_or_live_where_modules_start_their_own() -> None:
    items = [
        MarkedItem("tests/gateway/a.py::test_1", ["engine"]),
        MarkedItem("tests/gateway/b.py::test_1", marks=("engine",)),
        MarkedItem("tests/engine/c.py::test_1"),
        MarkedItem("tests/gateway/d.py::test_1", ["redis_server"]),
    ]
    groups = suite_groups(cast(list[pytest.Item], items), HEAVY)
    engines = engine_groups(groups, HEAVY, ("tests/engine/",))
    assert set(engines) == {"engine", "tests/gateway/b.py", "tests/engine/c.py"}


def test_an_engine_groups_weight_counts_its_engines() -> None:
    """Its expensive fixtures that are engines, plus the most a module starts itself, at least 2."""
    items = [
        MarkedItem("tests/a.py::test_1", ["engine", "vita_engine", "litellm_proxy"]),
        MarkedItem("tests/b.py::test_1", ["engine", "lora_engine"], engines=3),
        MarkedItem("tests/engine/c.py::test_1"),
        MarkedItem("tests/resilience/d.py::test_1", engines=2),
    ]
    groups = suite_groups(cast(list[pytest.Item], items), HEAVY | {"litellm_proxy"})
    weights = engine_groups(
        groups, HEAVY | {"litellm_proxy"}, ("tests/engine/", "tests/resilience/"), {"litellm_proxy"}
    )
    assert weights == {
        "engine+litellm_proxy+lora_engine+vita_engine": 3 + 3,
        "tests/engine/c.py": 2,
        "tests/resilience/d.py": 2,
    }
