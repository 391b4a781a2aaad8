"""The panel as a browser without JavaScript sees it: a cookie jar, its forms and their CSRF tokens."""

from __future__ import annotations

import asyncio
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gateway.auth.identities import AdminIdentities
from gateway.store import AuditContext, Database, Store
from gateway.store.admin_users import AdminUserStore
from gateway.store.records import UsageRow

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
