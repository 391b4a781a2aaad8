"""The panel as a browser without JavaScript sees it: a cookie jar, its forms and their CSRF tokens."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from gateway import Settings, create_app
from gateway.auth.identities import AdminIdentities
from gateway.store import AuditContext, Database, Store
from gateway.store.admin_users import AdminUserStore
from gateway.store.records import UsageRow
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

PASSWORD = "panel test password"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(database_url: str, username: str, role: str, tenant_id: str | None = None) -> None:
    """A named admin user in the gateway's own store (as `python -m gateway admin create-user`)."""

    async def create() -> None:
        database = Database(database_url)
        try:
            await database.migrate()
            identities = AdminIdentities(AdminUserStore(database), session_ttl_s=60)
            await identities.create_user(
                username, PASSWORD, role, tenant_id, audit=AuditContext(actor="test")
            )
        finally:
            await database.close()

    # In a thread of its own: a test driving Playwright's sync API has an event loop running here.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


class Panel:
    def __init__(self, base_url: str, **headers: str) -> None:
        self.http = httpx.Client(base_url=base_url + "/admin/ui", timeout=30, headers=headers)
        self.csrf = ""

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        form = self.http.get("/login")
        assert form.status_code == 200, form.text
        response = self.http.post(
            "/login", data={"csrf_token": csrf_of(form.text), "username": username, "password": password}
        )
        if response.status_code == 303:
            self.csrf = csrf_of(self.http.get("/tenants").text)
        return response

    def post(self, path: str, csrf: str | None = None, **fields: Any) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf if csrf is None else csrf, **fields})

    def close(self) -> None:
        self.http.close()


def usage_row(
    tenant_id: str, model: str, days_ago: int, tokens: int, cost_micros: int, end_user: str | None = None
) -> UsageRow:
    """A ledger row as the ledger writes one: naive UTC time, a unique request id."""
    return UsageRow(
        created_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days_ago),
        request_id="req-" + secrets.token_hex(8),
        tenant_id=tenant_id,
        key_id=None,
        model=model,
        endpoint="/v1/chat/completions",
        stream=False,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        cost_micros=cost_micros,
        latency_ms=100,
        status=200,
        outcome="ok",
        end_user=end_user,
    )


def write_usage(database_url: str, rows: list[UsageRow]) -> None:
    async def write() -> None:
        database = Database(database_url)
        try:
            await Store(database).add_usage(rows)
        finally:
            await database.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()


@dataclass
class PanelGateway:
    """A gateway of a panel test module, on a store of its own, with the admin key's client."""

    url: str
    database_url: str
    admin: AdminClient
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    # The gateway's app, for a test that reaches a part of it no endpoint writes (the memory graph).
    app: FastAPI | None = None

    def user(self, name: str, role: str, tenant_id: str | None = None) -> str:
        """A named admin user (`name` made unique); returns the username."""
        username = f"{name}-{self.suffix}"
        make_user(self.database_url, username, role, tenant_id)
        return username

    def panel(self, username: str) -> Panel:
        """A browser logged in as `username`."""
        panel = Panel(self.url)
        assert panel.login(username).status_code == 303
        return panel


@contextmanager
def panel_gateway(
    gateway_settings: Callable[..., Settings], admin_key: str, directory: Path, **settings: Any
) -> Iterator[PanelGateway]:
    database_url = f"sqlite+aiosqlite:///{directory / 'store.db'}"
    values = {"database_url": database_url, "jobs_enabled": False, **settings}
    app = create_app(gateway_settings(**values))
    with ThreadedServer(app) as server:
        admin = AdminClient(server.url, admin_key)
        try:
            yield PanelGateway(server.url, database_url, admin, app=app)
        finally:
            admin.close()
