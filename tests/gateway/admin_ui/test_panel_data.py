"""The panel's stored-data page over HTTP on a real gateway (real Redis and SQLite): the GDPR
registry's counts for a tenant and for one end user of it, a tenant admin limited to its own tenant
(another's id is a 404), every registry kind listed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gateway import Settings
from gateway.store.gdpr_special import REGISTRY
from tests.gateway.admin_ui.panel_client import PanelGateway, panel_gateway, usage_row, write_usage


@dataclass
class Data:
    gw: PanelGateway
    first: str
    second: str


@pytest.fixture(scope="module")
def data(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Data]:
    with panel_gateway(gateway_settings, admin_key, tmp_path_factory.mktemp("panel-data")) as gw:
        first = gw.admin.tenant(f"data-a-{gw.suffix}")["id"]
        second = gw.admin.tenant(f"data-b-{gw.suffix}")["id"]
        rows = [usage_row(first, "m", 0, 1, 1, end_user="alice") for _ in range(2)]
        rows += [usage_row(first, "m", 0, 1, 1, end_user="bob"), usage_row(second, "m", 0, 1, 1)]
        write_usage(gw.database_url, rows)
        gw.user("operator", "operator")
        gw.user("tenant", "tenant_admin", second)
        yield Data(gw, first, second)


def counts(html: str) -> dict[str, int]:
    return {kind: int(n) for kind, n in re.findall(r'data-kind="([^"]+)">(\d+)<', html)}


def test_counts_by_tenant_and_end_user(data: Data) -> None:
    operator = data.gw.panel(f"operator-{data.gw.suffix}")
    whole = operator.http.get("/data", params={"tenant_id": data.first})
    assert whole.status_code == 200, whole.text
    found = counts(whole.text)
    assert set(found) == {kind.name for kind in REGISTRY}
    assert found["ledger"] == 3
    alice = counts(operator.http.get("/data", params={"tenant_id": data.first, "user": "alice"}).text)
    assert alice["ledger"] == 2 and sum(alice.values()) == 2
    nobody = counts(operator.http.get("/data", params={"tenant_id": data.first, "user": "carol"}).text)
    assert sum(nobody.values()) == 0


def test_a_tenant_admin_sees_its_own_tenant_only(data: Data) -> None:
    tenant = data.gw.panel(f"tenant-{data.gw.suffix}")
    own = tenant.http.get("/data")
    assert own.status_code == 200 and counts(own.text)["ledger"] == 1
    assert f'value="{data.first}"' not in own.text
    assert tenant.http.get("/data", params={"tenant_id": data.first}).status_code == 404
