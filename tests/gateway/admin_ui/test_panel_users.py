"""The panel's admin users page over HTTP on a real gateway (real Redis and SQLite): an owner lists,
adds, disables and enables admin users (a disabled user's open session ends at once and its login
fails), every change audited with the owner as actor; bad values are 400 pages; no one else may."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from gateway import Settings
from gateway.store import Database
from gateway.store.admin_users import AdminUserStore
from tests.gateway.admin_ui.panel_client import PASSWORD, Panel, PanelGateway, panel_gateway


@dataclass
class Users:
    gw: PanelGateway
    tenant: dict[str, str]


@pytest.fixture(scope="module")
def users(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Users]:
    with panel_gateway(gateway_settings, admin_key, tmp_path_factory.mktemp("panel-users")) as gw:
        tenant = gw.admin.tenant(f"users-{gw.suffix}")
        gw.user("owner", "owner")
        gw.user("operator", "operator")
        yield Users(gw, tenant)


def test_an_owner_adds_disables_and_enables_users(users: Users) -> None:
    owner = users.gw.panel(f"owner-{users.gw.suffix}")
    page = owner.http.get("/users")
    assert page.status_code == 200 and f"operator-{users.gw.suffix}" in page.text
    new = f"ta-{users.gw.suffix}"
    made = owner.post(
        "/users", username=new, password=PASSWORD, role="tenant_admin", tenant_id=users.tenant["id"]
    )
    assert made.status_code == 303, made.text
    assert new in owner.http.get("/users").text

    signed_in = users.gw.panel(new)
    assert signed_in.http.get(f"/tenants/{users.tenant['id']}").status_code == 200
    user_id = _user_id(owner.http.get("/users").text, new)
    assert owner.post(f"/users/{user_id}/disabled", disabled="true").status_code == 303
    assert signed_in.http.get(f"/tenants/{users.tenant['id']}").status_code == 303  # to the login page
    assert Panel(users.gw.url).login(new).status_code == 401
    assert owner.post(f"/users/{user_id}/disabled", disabled="false").status_code == 303
    assert Panel(users.gw.url).login(new).status_code == 303

    audit = owner.http.get("/audit", params={"actor": f"user:owner-{users.gw.suffix}"}).text
    for action in ("admin_user.create", "admin_user.disable", "admin_user.enable"):
        assert action in audit


def test_bad_values_are_400_pages(users: Users) -> None:
    owner = users.gw.panel(f"owner-{users.gw.suffix}")
    cases = [
        {"username": "", "password": PASSWORD, "role": "operator"},
        {"username": f"x-{users.gw.suffix}", "password": PASSWORD, "role": "wizard"},
        {"username": f"x-{users.gw.suffix}", "password": "short", "role": "operator"},
        {"username": f"x-{users.gw.suffix}", "password": PASSWORD, "role": "tenant_admin"},
        {"username": f"x-{users.gw.suffix}", "password": PASSWORD, "role": "tenant_admin", "tenant_id": "no"},
        {"username": f"operator-{users.gw.suffix}", "password": PASSWORD, "role": "operator"},  # taken
    ]
    for fields in cases:
        response = owner.post("/users", **fields)
        assert response.status_code == 400, (fields, response.status_code)
        assert "text/html" in response.headers["content-type"]
    me = _stored_id(users.gw.database_url, f"owner-{users.gw.suffix}")
    assert owner.post(f"/users/{me}/disabled", disabled="true").status_code == 400
    assert owner.post("/users/adm-nope/disabled", disabled="true").status_code == 404


def test_only_an_owner_may(users: Users) -> None:
    operator = users.gw.panel(f"operator-{users.gw.suffix}")
    assert operator.http.get("/users").status_code == 403
    refused = operator.post("/users", username=f"y-{users.gw.suffix}", password=PASSWORD, role="owner")
    assert refused.status_code == 403
    assert "/users" not in operator.http.get("/tenants").text.split("<main")[0]


def _user_id(html: str, username: str) -> str:
    """The id in the user's disable form on the users page."""
    row = html[html.index(f">{username}<") :]
    found = re.search(r"/admin/ui/users/([^/]+)/disabled", row)
    assert found is not None
    return found.group(1)


def _stored_id(database_url: str, username: str) -> str:
    """An admin user's id from the store (an owner's own row has no disable form to read it from)."""

    async def find() -> str:
        database = Database(database_url)
        try:
            account = await AdminUserStore(database).find_user(username)
        finally:
            await database.close()
        assert account is not None
        return account.id

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, find()).result()
