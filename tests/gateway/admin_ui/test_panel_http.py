"""The panel over HTTP on a real gateway (its engine down: nothing here needs a model), real Redis and
SQLite: the session cookie's flags, CSRF on every change (token and Origin), each role's limits
enforced on the POST itself (auditor 403, a tenant admin's tampered ids 404), HTML errors (never a
422 or the API's JSON), the audit log naming the user and the client address a trusted proxy
forwarded, the bootstrap owner and the `admin create-user` command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.admin_ui.panel_client import PASSWORD, Panel, make_user
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

# The test client is the trusted proxy (127.0.0.1); the "browser" behind it is this address.
CLIENT = "203.0.113.9"


@pytest.fixture(scope="module")
def panel_url(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = gateway_settings(connect_timeout_s=1, trusted_proxies=["127.0.0.1/32"])
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def api(panel_url: str, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(panel_url, admin_key)
    yield client
    client.close()


@pytest.fixture(scope="module")
def users(panel_url: str, database_url: str, api: AdminClient) -> dict[str, str]:
    """Users of each role; the tenant admin's tenant and another's, each with a key."""
    mine, other = api.tenant("panel-http-mine"), api.tenant("panel-http-other")
    _, other_key = api.key(other["id"], "theirs")
    make_user(database_url, "http-operator", "operator")
    make_user(database_url, "http-auditor", "auditor")
    make_user(database_url, "http-tenant", "tenant_admin", mine["id"])
    return {"mine": mine["id"], "other": other["id"], "other_key": other_key["id"]}


def logged_in(url: str, username: str) -> Panel:
    panel = Panel(url, **{"x-forwarded-for": CLIENT})
    assert panel.login(username).status_code == 303
    return panel


def test_pages_need_a_session(panel_url: str) -> None:
    response = httpx.get(panel_url + "/admin/ui/tenants")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/ui/login"
    refused = httpx.post(panel_url + "/admin/ui/tenants", data={"name": "x"})
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("text/html")


def test_cookie_flags_and_secure_behind_tls(panel_url: str, users: dict[str, str]) -> None:
    panel = Panel(panel_url)
    response = panel.login("http-operator")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "tantra_admin_session=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin/ui" in cookie
    assert "secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    over_tls = Panel(panel_url, **{"x-forwarded-proto": "https"})
    form = over_tls.http.get("/login")
    assert "secure" in form.headers["set-cookie"].lower()
    assert form.headers["cache-control"] == "no-store" and form.headers["x-frame-options"] == "DENY"


def test_wrong_password_and_login_csrf(panel_url: str, users: dict[str, str]) -> None:
    panel = Panel(panel_url)
    response = panel.login("http-operator", "not the password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert "tantra_admin_session" not in response.headers.get("set-cookie", "")
    # A login form posted without the token its page set (a login CSRF): refused.
    forged = httpx.post(
        panel_url + "/admin/ui/login", data={"username": "http-operator", "password": PASSWORD}
    )
    assert forged.status_code == 403


def test_changes_need_the_csrf_token_and_our_origin(
    panel_url: str, users: dict[str, str], api: AdminClient
) -> None:
    panel = logged_in(panel_url, "http-operator")
    assert panel.post("/tenants", csrf="", name="panel-no-token").status_code == 403
    assert panel.post("/tenants", csrf="forged", name="panel-bad-token").status_code == 403
    cross = panel.http.post(
        "/tenants",
        data={"csrf_token": panel.csrf, "name": "panel-cross-site"},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and "CSRF" in cross.text
    made = panel.post("/tenants", name="panel-http-made", rpm="5")
    assert made.status_code == 303
    tenant_id = made.headers["location"].rsplit("/", 1)[1]
    names = [t["name"] for t in api.http.get("/admin/tenants").json()["data"]]
    assert "panel-http-made" in names
    assert not {"panel-no-token", "panel-bad-token", "panel-cross-site"} & set(names)
    entry = api.http.get("/admin/audit", params={"target_id": tenant_id}).json()["data"][0]
    assert (entry["action"], entry["actor"], entry["client_ip"]) == (
        "tenant.create",
        "user:http-operator",
        CLIENT,
    )
    assert entry["details"]["rpm"] == 5


def test_bad_form_values_are_a_400_page(panel_url: str, users: dict[str, str]) -> None:
    panel = logged_in(panel_url, "http-operator")
    for bad in ({"rpm": "-3"}, {"rpm": "many"}, {"budget_period": "year"}):
        response = panel.post(f"/tenants/{users['mine']}/limits", **bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.headers["content-type"].startswith("text/html")
    assert panel.post("/keys/key_nope/rotate", grace_seconds="-1").status_code == 404
    assert panel.post(f"/keys/{users['other_key']}/rotate", grace_seconds="1e9").status_code == 400


def test_auditor_reads_but_changes_nothing(panel_url: str, users: dict[str, str], api: AdminClient) -> None:
    panel = logged_in(panel_url, "http-auditor")
    page = panel.http.get(f"/tenants/{users['other']}")
    assert page.status_code == 200 and "theirs" in page.text
    assert "<button" in page.text  # the log-out button, and nothing else
    assert page.text.count("<button") == 1
    assert "Create tenant" not in panel.http.get("/tenants").text
    before = api.http.get("/admin/audit", params={"limit": 1}).json()["data"][0]["id"]
    for path, fields in [
        ("/tenants", {"name": "auditor-made"}),
        (f"/tenants/{users['other']}/limits", {"rpm": "1"}),
        (f"/tenants/{users['other']}/keys", {"name": "auditor-key"}),
        (f"/keys/{users['other_key']}/rotate", {}),
        (f"/keys/{users['other_key']}/revoke", {}),
        (f"/keys/{users['other_key']}/limits", {"rpm": "1"}),
    ]:
        response = panel.post(path, **fields)
        assert response.status_code == 403, (path, response.text)
        assert "auditor role cannot change anything" in response.text
    assert api.http.get(f"/admin/keys/{users['other_key']}").json()["status"] == "active"
    after = api.http.get("/admin/audit", params={"limit": 5}).json()["data"]
    assert [e for e in after if e["id"] > before and e["actor"] == "user:http-auditor"] == []


def test_tenant_admin_sees_only_its_tenant(panel_url: str, users: dict[str, str], api: AdminClient) -> None:
    panel = logged_in(panel_url, "http-tenant")
    listed = panel.http.get("/tenants").text
    assert "panel-http-mine" in listed and "panel-http-other" not in listed
    assert panel.http.get("/").headers["location"] == f"/admin/ui/tenants/{users['mine']}"
    # URL tampering: the other tenant and its key look like they do not exist.
    assert panel.http.get(f"/tenants/{users['other']}").status_code == 404
    assert panel.post(f"/tenants/{users['other']}/keys", name="stolen").status_code == 404
    assert panel.post(f"/keys/{users['other_key']}/revoke").status_code == 404
    assert panel.post(f"/keys/{users['other_key']}/rotate").status_code == 404
    assert api.http.get(f"/admin/keys/{users['other_key']}").json()["status"] == "active"
    audit = panel.http.get("/audit").text
    assert users["other"] not in audit and users["other_key"] not in audit
    # Its own tenant's limits are the operator's ceiling; its keys are its own.
    assert panel.post(f"/tenants/{users['mine']}/limits", rpm="100000").status_code == 403
    created = panel.post(f"/tenants/{users['mine']}/keys", name="own")
    assert created.status_code == 200
    secret = created.text.split('id="secret" class="secret" readonly size="70" value="')[1].split('"')[0]
    assert secret.startswith("sk-")
    assert created.headers["cache-control"] == "no-store"
    assert secret not in panel.http.get(f"/tenants/{users['mine']}").text  # shown once only


def test_logout_ends_the_session(panel_url: str, users: dict[str, str]) -> None:
    panel = logged_in(panel_url, "http-operator")
    cookie = panel.http.cookies["tantra_admin_session"]
    assert panel.post("/logout").status_code == 303
    stale = httpx.get(panel_url + "/admin/ui/tenants", cookies={"tantra_admin_session": cookie})
    assert stale.status_code == 303 and stale.headers["location"] == "/admin/ui/login"


def test_shared_admin_key_still_works(panel_url: str, api: AdminClient) -> None:
    tenant = api.tenant("panel-http-by-key")
    entry = api.http.get("/admin/audit", params={"target_id": tenant["id"]}).json()["data"][0]
    assert entry["actor"] == "admin"  # the automation's service identity


def test_bootstrap_owner_and_cli(gateway_settings: Callable[..., Settings], tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    settings = gateway_settings(
        connect_timeout_s=1,
        database_url=url,
        admin_bootstrap_user="root",
        admin_bootstrap_password=PASSWORD,
    )
    with ThreadedServer(create_app(settings)) as server:
        panel = Panel(server.url)
        assert panel.login("root").status_code == 303
        assert "Create tenant" in panel.http.get("/tenants").text  # an owner
        panel.close()
    env = {
        **os.environ,
        "TANTRA_DATABASE_URL": url,
        "TANTRA_NEW_ADMIN_PASSWORD": PASSWORD,
        "TANTRA_OPERATOR_PORT": "0",
    }
    command = [
        sys.executable,
        "-m",
        "gateway",
        "admin",
        "create-user",
        "--username",
        "ops",
        "--role",
        "operator",
    ]
    made = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert made.returncode == 0, made.stderr
    assert "created admin user 'ops' (operator)" in made.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    with ThreadedServer(create_app(settings)) as server:
        assert Panel(server.url).login("ops").status_code == 303
