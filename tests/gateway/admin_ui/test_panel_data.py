"""The panel's stored-data page over HTTP on a real gateway (real Redis and SQLite): the GDPR
registry's counts for a tenant and for one end user of it, a tenant admin limited to its own tenant
(another's id is a 404), every registry kind listed."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gateway import Settings, create_app
from gateway.store.gdpr_special import REGISTRY
from tests.gateway.admin_ui.panel_client import Panel, make_user, usage_row, write_usage
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer


@dataclass
class Data:
    url: str
    first: str
    second: str
    suffix: str

    def panel(self, name: str) -> Panel:
        panel = Panel(self.url)
        assert panel.login(f"{name}-{self.suffix}").status_code == 303
        return panel


@pytest.fixture(scope="module")
def data(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Data]:
    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('panel-data') / 'store.db'}"
    suffix = secrets.token_hex(3)
    settings = gateway_settings(database_url=database_url, jobs_enabled=False)
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        first, second = admin.tenant(f"data-a-{suffix}")["id"], admin.tenant(f"data-b-{suffix}")["id"]
        admin.close()
        rows = [usage_row(first, "m", 0, 1, 1, end_user="alice") for _ in range(2)]
        rows += [usage_row(first, "m", 0, 1, 1, end_user="bob"), usage_row(second, "m", 0, 1, 1)]
        write_usage(database_url, rows)
        make_user(database_url, f"operator-{suffix}", "operator")
        make_user(database_url, f"tenant-{suffix}", "tenant_admin", second)
        yield Data(server.url, first, second, suffix)


def counts(html: str) -> dict[str, int]:
    return {kind: int(n) for kind, n in re.findall(r'data-kind="([^"]+)">(\d+)<', html)}


def test_counts_by_tenant_and_end_user(data: Data) -> None:
    operator = data.panel("operator")
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
    tenant = data.panel("tenant")
    own = tenant.http.get("/data")
    assert own.status_code == 200 and counts(own.text)["ledger"] == 1
    assert f'value="{data.first}"' not in own.text
    assert tenant.http.get("/data", params={"tenant_id": data.first}).status_code == 404
