"""/admin/retention on a real gateway (its engine down), real Redis and a SQLite store of its own:
a tenant's policy read, set per kind and taken back to the default (audited with the actor), bad
values a 400 in OpenAI's envelope (never 422), an unknown tenant 404, the admin key required, the
overview, and a run of the sweep on demand; the gateway's start queued this slot's retention job."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from gateway.settings.fields_retention import RETENTION_KINDS
from tests.gateway.admin_ui.panel_client import Panel, make_user
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retention") / "retention.db"


@pytest.fixture(scope="module")
def url(gateway_settings: Callable[..., Settings], store_path: Path) -> Iterator[str]:
    store = f"sqlite+aiosqlite:///{store_path}"
    settings = gateway_settings(
        connect_timeout_s=1, database_url=store, retention_responses_days=30, retention_ledger_days=400
    )
    app = create_app(settings)
    with ThreadedServer(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def admin(url: str, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(url, admin_key)
    yield client
    client.close()


def _call(url: str, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url + path, headers={"authorization": f"Bearer {key}"}, timeout=30, **kwargs)


def test_a_tenants_policy(url: str, admin_key: str, admin: AdminClient) -> None:
    tenant = admin.tenant("retention-a")["id"]
    path = f"/admin/tenants/{tenant}/retention"
    shown = _call(url, admin_key, "GET", path).json()
    assert (
        shown["tenant"] == {} and shown["defaults"]["responses"] == 30 and shown["defaults"]["ledger"] == 400
    )
    assert set(shown["defaults"]) == set(RETENTION_KINDS) and shown["due"] == dict.fromkeys(
        RETENTION_KINDS, 0
    )
    changed = _call(url, admin_key, "PUT", path, json={"files": 7, "responses": 0})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["tenant"] == {"files": 7, "responses": 0}
    assert (
        body["effective"]["files"] == 7
        and body["effective"]["responses"] == 0
        and body["effective"]["ledger"] == 400
    )
    back = _call(url, admin_key, "PUT", path, json={"responses": None}).json()
    assert back["tenant"] == {"files": 7} and back["effective"]["responses"] == 30
    audit = admin.http.get("/admin/audit", params={"target_id": tenant}).json()["data"]
    assert [entry["action"] for entry in audit].count("retention.set") == 2


@pytest.mark.parametrize("body", [{"files": -1}, {"files": "week"}, {"logs": 3}, [1], {"ledger": 7}])
def test_bad_values_are_400s(url: str, admin_key: str, admin: AdminClient, body: Any) -> None:
    tenant = admin.tenant(f"retention-bad-{abs(hash(str(body)))}")["id"]
    response = _call(url, admin_key, "PUT", f"/admin/tenants/{tenant}/retention", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_tenant_and_no_key(url: str, admin_key: str) -> None:
    assert _call(url, admin_key, "GET", "/admin/tenants/tn_nope/retention").status_code == 404
    assert httpx.get(url + "/admin/retention").status_code == 401
    assert _call(url, "sk-not-admin", "POST", "/admin/retention/run").status_code == 401


def test_overview_run_and_the_scheduled_job(url: str, admin_key: str, store_path: Path) -> None:
    overview = _call(url, admin_key, "GET", "/admin/retention", params={"within_days": 30}).json()
    assert overview["defaults"]["responses"] == 30 and isinstance(overview["tenants"], dict)
    ran = _call(url, admin_key, "POST", "/admin/retention/run")
    assert ran.status_code == 200 and set(ran.json()["deleted"]) == set(RETENTION_KINDS)
    # Scheduled in the background at start (a store down then must not stop the gateway).
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(store_path) as db:
            jobs = db.execute("SELECT id FROM jobs WHERE kind = 'retention'").fetchall()
        if jobs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(jobs) >= 1 and all(job_id.startswith("retention-") for (job_id,) in jobs)


def test_the_panels_what_will_expire_page(
    url: str, admin: AdminClient, admin_key: str, store_path: Path
) -> None:
    """Read only, per tenant the user may see: an operator sees every tenant, a tenant admin its own
    (the other's name is nowhere on the page); no session goes to the login page."""
    mine, other = admin.tenant("retention-panel-mine")["id"], admin.tenant("retention-panel-other")["id"]
    assert (
        _call(url, admin_key, "PUT", f"/admin/tenants/{mine}/retention", json={"files": 3}).status_code == 200
    )
    database = f"sqlite+aiosqlite:///{store_path}"
    make_user(database, "ret-operator", "operator")
    make_user(database, "ret-tenant", "tenant_admin", mine)
    assert httpx.get(url + "/admin/ui/retention").status_code == 303
    operator = Panel(url)
    assert operator.login("ret-operator").status_code == 303
    page = operator.http.get("/retention")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert mine in page.text and other in page.text and "(tenant)" in page.text
    assert (
        '<th scope="row">fine tuning jobs</th>' in page.text
        and "<form" not in page.text.split("<main", 1)[-1]
    )
    tenant_admin = Panel(url)
    assert tenant_admin.login("ret-tenant").status_code == 303
    own = tenant_admin.http.get("/retention")
    assert own.status_code == 200 and mine in own.text and other not in own.text
