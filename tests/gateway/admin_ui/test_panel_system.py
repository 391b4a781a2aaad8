"""The panel's system page over HTTP on a real gateway (real Redis and SQLite, a live config file):
the upstreams' breakers as routing sees them, the configuration with secrets masked, and this
replica's reloads, applied and refused; a tenant admin gets a 403 and no link."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from gateway import Settings
from tests.gateway.admin_ui.panel_client import Panel, PanelGateway, panel_gateway


@dataclass
class System:
    gw: PanelGateway
    config: Path
    admin_key: str


@pytest.fixture(scope="module")
def system(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("panel-system")
    config = tmp / "tantra.yaml"
    config.write_text(yaml.safe_dump({"realtime_max_items": 300}))
    upstreams = {"engine-a": {"url": "http://127.0.0.1:9"}, "engine-b": {"url": "http://127.0.0.1:10"}}
    with panel_gateway(
        gateway_settings, admin_key, tmp, upstreams=upstreams, config_file=config, config_poll_s=0.1
    ) as gw:
        tenant = gw.admin.tenant(f"system-{gw.suffix}")
        gw.user("operator", "operator")
        gw.user("tenant", "tenant_admin", tenant["id"])
        yield System(gw, config, admin_key)


def _page_after(panel: Panel, text: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        page = panel.http.get("/system")
        assert page.status_code == 200, page.text
        if text in page.text:
            return page.text
        assert time.monotonic() < deadline, f"{text!r} never showed"
        time.sleep(0.2)


def test_an_operator_sees_upstreams_settings_and_reloads(system: System) -> None:
    operator = system.gw.panel(f"operator-{system.gw.suffix}")
    page = operator.http.get("/system").text
    assert "engine-a" in page and "engine-b" in page and "closed" in page
    assert "TANTRA_REALTIME_MAX_ITEMS" in page and "No reload since this replica started." in page
    assert system.admin_key not in page and "[redacted]" in page

    system.config.write_text(yaml.safe_dump({"realtime_max_items": 42}))
    applied = _page_after(operator, "realtime_max_items</td>")
    assert "applied" in applied and "<code>42</code>" in applied
    system.config.write_text(yaml.safe_dump({"realtime_max_items": "lots"}))
    refused = _page_after(operator, "rejected")
    assert "realtime_max_items" in refused.split("rejected", 1)[1].split("</tr>", 1)[0]
    assert "<code>42</code>" in refused  # the previous configuration stays


def test_a_tenant_admin_may_not(system: System) -> None:
    tenant = system.gw.panel(f"tenant-{system.gw.suffix}")
    assert tenant.http.get("/system").status_code == 403
    home = tenant.http.get("/", follow_redirects=True)
    assert home.status_code == 200 and "Signed in as" in home.text
    assert "/system" not in home.text.split("<main")[0]
