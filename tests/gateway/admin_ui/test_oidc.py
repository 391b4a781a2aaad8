"""The panel's single sign-on against a real OpenID Connect provider run by the test
(oidc_provider.py: authlib's authorization server, RS256 keys made here) and a real gateway (uvicorn
in a thread, real Redis, its own SQLite store). A browser without JavaScript is played by httpx with
a cookie jar: it follows the redirects, posts the provider's consent form, and lands on the panel.

- The whole flow (authorization code, PKCE S256, state, nonce): the session cookie opens an admin
  page as the mapped role, the login is audited with the person and the method; the next sign-in of
  a user whose group changed follows the mapping.
- Failures, each a clear error page and no session: a tampered state, no pending login, an ID token
  for another audience, an expired one, a user no group maps, a domain not allowed, the provider
  refusing, a local admin user of the same name.
- Groups the provider releases only at its userinfo endpoint (`TANTRA_OIDC_USERINFO`) still map.
- Logging out ends the provider's session too (RP-initiated logout: its `end_session_endpoint` with
  the session's ID token as `id_token_hint`), then the browser is back at the panel's login page."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.admin_ui.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, Person
from tests.gateway.admin_ui.panel_client import PASSWORD, make_user
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

SESSION = "tantra_admin_session"
PEOPLE = {
    "alice": Person("sub-alice", "alice@example.com", ["tantra-operators"]),
    "olga": Person("sub-olga", "olga@example.com", ["staff"]),  # no group mapped
    "mallory": Person("sub-mallory", "mallory@elsewhere.org", ["tantra-operators"]),
    "local": Person("sub-local", "local@example.com", ["tantra-owners"]),
    "aud": Person("sub-aud", "aud@example.com", ["tantra-auditors"]),
    "ghost": Person("sub-ghost", "ghost@example.com", ["ghost-tenant"]),
}


@dataclass
class Sso:
    url: str
    provider: OidcProvider
    admin: AdminClient
    database_url: str


@pytest.fixture(scope="module")
def sso(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sso]:
    tmp: Path = tmp_path_factory.mktemp("oidc")
    database_url = f"sqlite+aiosqlite:///{tmp / 'store.db'}"
    with OidcProvider(PEOPLE) as provider:
        settings = gateway_settings(
            database_url=database_url,
            blob_dir=tmp / "blobs",
            jobs_enabled=False,
            oidc_issuer=provider.issuer,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            oidc_scopes=["openid", "email", "groups"],
            oidc_role_mapping={
                "tantra-operators": "operator",
                "tantra-owners": "owner",
                "tantra-auditors": "auditor",
                "ghost-tenant": "tenant_admin:tn_missing",
            },
            oidc_allowed_domains=["example.com"],
            oidc_userinfo=True,
        )
        with ThreadedServer(create_app(settings)) as server:
            admin = AdminClient(server.url, admin_key)
            yield Sso(server.url, provider, admin, database_url)
            admin.close()


def _to_consent(sso: Sso, browser: httpx.Client) -> httpx.Response:
    """The login page's link, then the gateway's redirect to the provider's consent form."""
    login = browser.get(sso.url + "/admin/ui/login")
    assert 'href="/admin/ui/login/oidc"' in login.text
    consent = browser.get(sso.url + "/admin/ui/login/oidc", follow_redirects=True)
    assert consent.status_code == 200 and str(consent.url).startswith(sso.provider.issuer + "/authorize")
    asked = parse_qs(urlsplit(str(consent.url)).query)
    assert asked["code_challenge_method"] == ["S256"] and asked["client_id"] == [CLIENT_ID]
    assert len(asked["state"][0]) > 30 and len(asked["nonce"][0]) > 30 and "openid" in asked["scope"][0]
    return consent


def _sign_in(sso: Sso, browser: httpx.Client, username: str) -> httpx.Response:
    """The whole flow, up to the gateway's answer to the provider's redirect."""
    consent = _to_consent(sso, browser)
    return browser.post(
        str(consent.url), data={"username": username, "confirm": "yes"}, follow_redirects=True
    )


def _no_session(browser: httpx.Client, sso: Sso) -> None:
    assert SESSION not in browser.cookies
    assert browser.get(sso.url + "/admin/ui/tenants").status_code == 303  # to the login page


def test_sign_in_opens_a_session_as_the_mapped_role(sso: Sso) -> None:
    with httpx.Client(timeout=30) as browser:
        landed = _sign_in(sso, browser, "alice")
        assert landed.status_code == 200, landed.text
        assert str(landed.url).startswith(sso.url + "/admin/ui/login/oidc/callback?")
        assert "alice@example.com" in landed.text and "operator" in landed.text
        assert 'http-equiv="refresh"' in landed.text
        assert browser.cookies.get(SESSION)
        # The session opens the panel as the operator the group maps to (a tenant can be created).
        tenants = browser.get(sso.url + "/admin/ui/tenants")
        assert tenants.status_code == 200 and "alice@example.com" in tenants.text
        assert "Create" in tenants.text
    audit = sso.admin.http.get("/admin/audit", params={"action": "admin."}).json()
    entries = audit["data"] if isinstance(audit, dict) else audit
    login = next(
        e for e in entries if e["action"] == "admin.login" and e["actor"] == "user:alice@example.com"
    )
    assert login["details"]["method"] == "oidc" and login["details"]["sub"] == "sub-alice"
    assert login.get("client_ip") == "127.0.0.1"


def test_the_role_follows_the_mapping_at_each_sign_in(sso: Sso) -> None:
    PEOPLE["aud"].groups = ["tantra-auditors"]
    with httpx.Client(timeout=30) as browser:
        assert "auditor" in _sign_in(sso, browser, "aud").text
    PEOPLE["aud"].groups = ["tantra-operators"]
    with httpx.Client(timeout=30) as browser:
        assert "operator" in _sign_in(sso, browser, "aud").text


@pytest.mark.parametrize(
    ("fault", "username", "status", "says"),
    [
        ({"aud": "someone-else"}, "alice", 401, "ID token is not valid"),
        ({"exp_offset": -3600}, "alice", 401, "ID token is not valid"),
        ({}, "olga", 403, "no role in this panel"),
        ({}, "mallory", 403, "domain is not allowed"),
        ({}, "nobody", 401, "refused the sign-in"),
        ({}, "ghost", 403, "could not be made as tenant_admin"),
    ],
)
def test_a_bad_sign_in_is_a_clear_error_and_no_session(
    sso: Sso, fault: dict[str, object], username: str, status: int, says: str
) -> None:
    sso.provider.faults = fault
    try:
        with httpx.Client(timeout=30) as browser:
            landed = _sign_in(sso, browser, username)
            assert landed.status_code == status, landed.text
            assert says in landed.text
            _no_session(browser, sso)
    finally:
        sso.provider.faults = {}
    audit = sso.admin.http.get("/admin/audit", params={"action": "admin.login_failed"}).json()
    entries = audit["data"] if isinstance(audit, dict) else audit
    assert any(e["details"].get("method") == "oidc" and says in e["details"]["error"] for e in entries)


def test_a_tampered_state_or_no_pending_login_is_refused(sso: Sso) -> None:
    with httpx.Client(timeout=30) as browser:
        consent = _to_consent(sso, browser)
        back = browser.post(str(consent.url), data={"username": "alice", "confirm": "yes"})
        assert back.status_code == 302
        callback = urlsplit(back.headers["location"])
        query = {k: v[0] for k, v in parse_qs(callback.query).items()}
        forged = callback._replace(query=urlencode({**query, "state": secrets.token_urlsafe(32)})).geturl()
        refused = browser.get(forged)
        assert refused.status_code == 400 and "state does not match" in refused.text
        _no_session(browser, sso)
    # Another browser bringing the same callback (no pending login of its own).
    with httpx.Client(timeout=30) as other:
        refused = other.get(back.headers["location"])
        assert refused.status_code == 400 and "No sign-in was started" in refused.text
        _no_session(other, sso)


def test_a_local_admin_user_of_the_same_name_is_not_taken_over(sso: Sso) -> None:
    make_user(sso.database_url, "local@example.com", "auditor")
    with httpx.Client(timeout=30) as browser:
        landed = _sign_in(sso, browser, "local")
        assert landed.status_code == 403 and "not this identity provider" in landed.text
        _no_session(browser, sso)


def test_groups_released_only_by_userinfo_still_map(sso: Sso) -> None:
    sso.provider.faults = {"userinfo_only": True}
    try:
        with httpx.Client(timeout=30) as browser:
            landed = _sign_in(sso, browser, "alice")
            assert landed.status_code == 200, landed.text
            assert "alice@example.com" in landed.text and "operator" in landed.text
            assert browser.get(sso.url + "/admin/ui/tenants").status_code == 200
    finally:
        sso.provider.faults = {}


def test_logout_ends_the_providers_session_too(sso: Sso) -> None:
    with httpx.Client(timeout=30) as browser:
        assert _sign_in(sso, browser, "alice").status_code == 200
        page = browser.get(sso.url + "/admin/ui/tenants").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        out = browser.post(sso.url + "/admin/ui/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303 and out.headers["location"].startswith(sso.provider.issuer + "/logout?")
        back = browser.get(out.headers["location"], follow_redirects=True)
        assert back.status_code == 200 and str(back.url) == sso.url + "/admin/ui/login"
        _no_session(browser, sso)
    call = sso.provider.logouts[-1]
    assert call["post_logout_redirect_uri"] == sso.url + "/admin/ui/login" and call["client_id"] == CLIENT_ID
    payload = call["id_token_hint"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == "sub-alice" and claims["iss"] == sso.provider.issuer


def test_a_password_session_logs_out_at_the_panel_only(sso: Sso) -> None:
    make_user(sso.database_url, "pw-owner", "owner")
    with httpx.Client(base_url=sso.url + "/admin/ui", timeout=30) as browser:
        form = browser.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        fields = {"csrf_token": token.group(1), "username": "pw-owner", "password": PASSWORD}
        assert browser.post("/login", data=fields).status_code == 303
        page = browser.get("/tenants").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None
        out = browser.post("/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303 and out.headers["location"] == "/admin/ui/login"
