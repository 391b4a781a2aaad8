"""The panel's PII page over HTTP on a real gateway (real Redis and SQLite): an operator sets a
tenant's policy through the form (read back through the admin API) and drops it back to the default,
audited; bad values are a 400 page; a tenant admin sees its own tenant's policy, no form, and its
POST is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway import Settings
from tests.gateway.admin_ui.panel_client import Panel, PanelGateway, panel_gateway


@dataclass
class Pii:
    gw: PanelGateway
    first: dict[str, Any]
    second: dict[str, Any]

    def policy(self, tenant_id: str) -> dict[str, Any]:
        response = self.gw.admin.http.get(f"/admin/pii/policies/{tenant_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def pii(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pii]:
    directory = tmp_path_factory.mktemp("panel-pii")
    with panel_gateway(gateway_settings, admin_key, directory, pii_policy_cache_s=0) as gw:
        first, second = gw.admin.tenant(f"pii-a-{gw.suffix}"), gw.admin.tenant(f"pii-b-{gw.suffix}")
        gw.user("operator", "operator")
        gw.user("tenant", "tenant_admin", second["id"])
        yield Pii(gw, first, second)


def _post(panel: Panel, tenant_id: str, **fields: Any) -> httpx.Response:
    return panel.http.post(f"/pii/{tenant_id}", data={"csrf_token": panel.csrf, **fields})


def test_an_operator_sets_a_policy_and_returns_to_the_default(pii: Pii) -> None:
    operator = pii.gw.panel(f"operator-{pii.gw.suffix}")
    page = operator.http.get("/pii")
    assert 'href="/admin/ui/pii"' in page.text  # the navigation links to it while it is served
    assert page.status_code == 200 and pii.first["name"] in page.text and pii.second["name"] in page.text
    assert pii.policy(pii.first["id"])["source"] == "default"
    fields = {
        "store": "on",
        "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER"],
        "threshold": "0.5",
        "action": "set",
    }
    assert _post(operator, pii.first["id"], **fields).status_code == 303
    policy = pii.policy(pii.first["id"])
    assert (policy["source"], policy["store"], policy["prompt"]) == ("tenant", True, False)
    assert (sorted(policy["entities"]), policy["threshold"]) == (["EMAIL_ADDRESS", "PHONE_NUMBER"], 0.5)
    assert "its own policy" in operator.http.get("/pii").text
    assert _post(operator, pii.first["id"], action="default").status_code == 303
    assert pii.policy(pii.first["id"])["source"] == "default"
    audit = operator.http.get("/audit", params={"actor": f"user:operator-{pii.gw.suffix}"}).text
    assert "pii" in audit


def test_bad_values_are_a_400_page(pii: Pii) -> None:
    operator = pii.gw.panel(f"operator-{pii.gw.suffix}")
    for fields in ({"entities": ["MAGIC"], "action": "set"}, {"threshold": "2", "action": "set"}):
        response = _post(operator, pii.first["id"], **fields)
        assert response.status_code == 400, fields
        assert "text/html" in response.headers["content-type"]
    assert _post(operator, "tn-nope", action="default").status_code == 404


def test_a_tenant_admin_reads_its_own_policy_only(pii: Pii) -> None:
    tenant = pii.gw.panel(f"tenant-{pii.gw.suffix}")
    page = tenant.http.get("/pii").text
    assert pii.second["name"] in page and pii.first["name"] not in page
    assert "Save the policy" not in page
    assert _post(tenant, pii.second["id"], action="default").status_code == 403
    assert _post(tenant, pii.first["id"], action="default").status_code == 404
