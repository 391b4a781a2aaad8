"""Fixtures for the deployment tests: the chart rendered once per values file."""

from __future__ import annotations

import pytest

from tests.deploy.support import VALUES_FILES, Manifests, load_values, render_chart


@pytest.fixture(scope="session")
def rendered() -> dict[str, Manifests]:
    """The chart rendered with each values file: its defaults, and a production-like install."""
    return {name: render_chart(load_values(name)) for name in VALUES_FILES}


@pytest.fixture(scope="session", params=sorted(VALUES_FILES))
def values_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def manifests(rendered: dict[str, Manifests], values_name: str) -> Manifests:
    return rendered[values_name]
