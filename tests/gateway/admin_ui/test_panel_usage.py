"""The panel's usage page and its CSV over HTTP on a real gateway (real Redis and SQLite, ledger rows
written through the store as the ledger writes them): totals by tenant, model and day, the chart's
bars, the day window, and a tenant admin seeing their own tenant only; bad choices are a 400 page."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gateway import Settings
from tests.gateway.admin_ui.panel_client import Panel, PanelGateway, panel_gateway, usage_row, write_usage


@dataclass
class Usage:
    gw: PanelGateway
    ours: dict[str, str]
    theirs: dict[str, str]


@pytest.fixture(scope="module")
def usage(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Usage]:
    with panel_gateway(gateway_settings, admin_key, tmp_path_factory.mktemp("panel-usage")) as gw:
        ours, theirs = (
            gw.admin.tenant(f"usage-ours-{gw.suffix}"),
            gw.admin.tenant(f"usage-theirs-{gw.suffix}"),
        )
        write_usage(
            gw.database_url,
            [
                usage_row(ours["id"], "model-a", 0, 10, 2_000_000),
                usage_row(ours["id"], "model-b", 1, 5, 1_000_000),
                usage_row(theirs["id"], "model-a", 0, 7, 500_000),
                usage_row(theirs["id"], "model-a", 20, 3, 300_000),  # outside a 7-day window
            ],
        )
        gw.user("usage-operator", "operator")
        gw.user("usage-tenant", "tenant_admin", ours["id"])
        yield Usage(gw, ours, theirs)


def _logged_in(usage: Usage, role: str) -> Panel:
    return usage.gw.panel(f"usage-{role}-{usage.gw.suffix}")


def _csv(panel: Panel, **params: str) -> list[dict[str, str]]:
    response = panel.http.get("/usage.csv", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_an_operator_sees_every_tenant_by_tenant_model_and_day(usage: Usage) -> None:
    panel = _logged_in(usage, "operator")
    page = panel.http.get("/usage", params={"by": "tenant", "days": "30"})
    assert page.status_code == 200, page.text
    assert usage.ours["name"] in page.text and usage.theirs["name"] in page.text
    assert "<svg" in page.text and page.text.count("<rect") == 2
    by_tenant = {row["label"]: row for row in _csv(panel, by="tenant", days="30")}
    assert by_tenant[usage.ours["name"]]["cost_usd"] == "3.0"
    assert (by_tenant[usage.theirs["name"]]["requests"], by_tenant[usage.theirs["name"]]["cost_usd"]) == (
        "2",
        "0.8",
    )
    by_model = {row["label"]: row for row in _csv(panel, by="model", days="7")}
    assert by_model["model-a"]["total_tokens"] == str(20 + 14) and by_model["model-b"]["total_tokens"] == "10"
    days = [row["label"] for row in _csv(panel, by="day", days="30")]
    assert days == sorted(days) and len(days) >= 3


def test_a_tenant_admin_sees_their_tenant_only(usage: Usage) -> None:
    panel = _logged_in(usage, "tenant")
    page = panel.http.get("/usage", params={"by": "tenant"})
    assert usage.ours["name"] in page.text and usage.theirs["name"] not in page.text
    rows = _csv(panel, by="model", days="30")
    assert {row["label"]: row["requests"] for row in rows} == {"model-a": "1", "model-b": "1"}


def test_bad_choices_are_a_400_page_and_no_session_goes_to_login(usage: Usage) -> None:
    panel = _logged_in(usage, "operator")
    for params in ({"by": "weather"}, {"days": "0"}, {"days": "400"}, {"metric": "vibes"}):
        response = panel.http.get("/usage", params=params)
        assert response.status_code == 400, params
        assert "text/html" in response.headers["content-type"]
    stranger = Panel(usage.gw.url)
    assert stranger.http.get("/usage.csv").status_code == 303
