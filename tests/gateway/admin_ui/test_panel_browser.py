"""The control panel in a real browser (Playwright driving Debian's headless chromium) against the
session's real gateway, vLLM engine, Redis and SQLite: an owner logs in with the keyboard, creates a
tenant and a key (its secret seen once), uses the key through the openai SDK, rotates it with a
grace period, sets a limit and watches a request get 429, revokes it, and reads the audit entries
naming them; a tenant admin cannot reach another tenant, even by URL; an auditor sees no buttons and
a forged POST is refused. Screenshots of the main pages go to <pytest tmp>/artefacts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from playwright.sync_api import Browser, Page, sync_playwright

from tests.gateway.admin_ui.panel_client import PASSWORD, make_user
from tests.gateway.helpers import AdminClient

# The session's engine may start during the first test's setup: on a loaded 2-core machine that
# alone can take most of the default 600 s.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1500)]

CHROMIUM = Path("/usr/bin/chromium")
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"NO BROWSER: Debian's chromium is not at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "artefacts"
    folder.mkdir(exist_ok=True)
    return folder


def log_in(browser: Browser, url: str, username: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(url + "/admin/ui/")
    assert page.url.endswith("/admin/ui/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")  # the keyboard alone submits the form
    page.wait_for_load_state()
    assert page.locator("#whoami").inner_text() == username
    return page


def client(url: str, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=0, timeout=120)


def test_owner_runs_a_tenant(
    browser: Browser, gateway_url: str, database_url: str, model: str, artefacts: Path
) -> None:
    tag = secrets.token_hex(3)
    owner = f"owner-{tag}"
    make_user(database_url, owner, "owner")
    page = log_in(browser, gateway_url, owner)
    page.screenshot(path=artefacts / "tenants.png", full_page=True)

    page.get_by_label("Name").fill(f"browser-{tag}")
    page.get_by_role("button", name="Create tenant").click()
    assert page.locator("#tenant-name").inner_text() == f"browser-{tag}"
    tenant_url = page.url

    page.get_by_label("Name").fill("web")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret").input_value()
    assert secret.startswith("sk-")
    page.screenshot(path=artefacts / "key-created.png", full_page=True)
    page.goto(tenant_url)
    assert secret not in page.content()  # seen once
    assert (
        client(gateway_url, secret).chat.completions.create(model=model, messages=HELLO, max_tokens=2).choices
    )

    # Rotate with a grace period: a new secret shown once, the old one still works for a while.
    page.get_by_label("Grace (seconds)").fill("120")
    page.get_by_role("button", name="Rotate web").click()
    rotated = page.get_by_label("Secret").input_value()
    assert rotated.startswith("sk-") and rotated != secret
    assert client(gateway_url, secret).models.list().data
    page.goto(tenant_url)
    page.screenshot(path=artefacts / "tenant.png", full_page=True)

    # One request a minute: the next requests get 429.
    page.locator("summary", has_text="Limits of web").click()
    page.locator("#key-limits-form, form[action$='/limits']").last.get_by_label("Requests per minute").fill(
        "1"
    )
    page.get_by_role("button", name="Save limits of web").click()
    assert page.url == tenant_url
    limited = client(gateway_url, rotated)
    with pytest.raises(openai.RateLimitError):
        for _ in range(3):
            limited.chat.completions.create(model=model, messages=HELLO, max_tokens=2)

    page.get_by_role("button", name="Revoke web").click()
    assert "revoked" in page.locator("tbody tr").first.inner_text()
    with pytest.raises(openai.AuthenticationError):
        client(gateway_url, rotated).models.list()

    page.goto(gateway_url + "/admin/ui/audit")
    page.get_by_label("Actor").fill(f"user:{owner}")
    page.get_by_role("button", name="Filter").click()
    page.screenshot(path=artefacts / "audit.png", full_page=True)
    actions = page.locator("td.action").all_inner_texts()
    assert actions == ["key.revoke", "key.update", "key.rotate", "key.create", "tenant.create", "admin.login"]
    assert set(page.locator("td.actor").all_inner_texts()) == {f"user:{owner}"}

    # The usage page after those real requests (the ledger flushes every 0.1 s in the tests).
    row = page.locator("tbody tr", has_text=f"browser-{tag}")
    for _ in range(50):
        page.goto(gateway_url + "/admin/ui/usage?by=tenant&days=1&metric=requests")
        if row.count():
            break
        time.sleep(0.2)
    assert int(row.locator("td").first.inner_text()) >= 2
    assert page.locator("svg rect").count() >= 1
    page.screenshot(path=artefacts / "usage.png", full_page=True)
    page.context.close()


def test_tenant_admin_cannot_see_another_tenant(
    browser: Browser, gateway_url: str, database_url: str, admin: AdminClient, artefacts: Path
) -> None:
    tag = secrets.token_hex(3)
    mine, other = admin.tenant(f"ta-mine-{tag}"), admin.tenant(f"ta-other-{tag}")
    admin.key(other["id"], "theirs")
    make_user(database_url, f"ta-{tag}", "tenant_admin", mine["id"])
    page = log_in(browser, gateway_url, f"ta-{tag}")
    assert page.locator("#tenant-name").inner_text() == f"ta-mine-{tag}"  # its tenant is its home
    page.goto(gateway_url + "/admin/ui/tenants")
    assert f"ta-mine-{tag}" in page.content() and f"ta-other-{tag}" not in page.content()
    response = page.goto(gateway_url + f"/admin/ui/tenants/{other['id']}")  # URL tampering
    assert response is not None and response.status == 404
    assert "theirs" not in page.content()
    page.screenshot(path=artefacts / "tenant-admin-404.png", full_page=True)
    page.context.close()


def test_auditor_cannot_change_anything(
    browser: Browser, gateway_url: str, database_url: str, admin: AdminClient, artefacts: Path
) -> None:
    tag = secrets.token_hex(3)
    tenant = admin.tenant(f"audited-{tag}")
    _, key = admin.key(tenant["id"], "kept")
    make_user(database_url, f"auditor-{tag}", "auditor")
    page = log_in(browser, gateway_url, f"auditor-{tag}")
    page.goto(gateway_url + f"/admin/ui/tenants/{tenant['id']}")
    page.screenshot(path=artefacts / "auditor-tenant.png", full_page=True)
    assert page.get_by_role("button").all_inner_texts() == ["Log out"]
    assert page.get_by_label("Requests per minute").first.is_disabled()
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    forged = page.context.request.post(
        gateway_url + f"/admin/ui/keys/{key['id']}/revoke", form={"csrf_token": csrf}
    )
    assert forged.status == 403
    assert admin.http.get(f"/admin/keys/{key['id']}").json()["status"] == "active"
    page.context.close()
