"""Issue 16, point 17: the admin API. A short admin key is refused at start (the loader names the
setting and never shows the key); the audit log's client address and actor come from
X-Forwarded-For / X-Forwarded-User only when the peer is a configured trusted proxy."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from gateway import Settings, create_app
from gateway.settings.load import ConfigError, load_settings

SHORT = "change-me-admin-key"  # what deploy/.env.example shipped: 19 characters


def test_a_short_admin_key_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANTRA_ADMIN_KEY", SHORT)
    with pytest.raises(ConfigError) as refused:
        load_settings(Settings)
    message = str(refused.value)
    assert "admin_key (TANTRA_ADMIN_KEY)" in message
    assert "at least 24 characters" in message
    assert SHORT not in message
    with pytest.raises(ValidationError):
        Settings(admin_key=SHORT)


def test_a_short_admin_key_in_its_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "admin.key"
    path.write_text(SHORT + "\n")
    problems = Settings(admin_key_file=path).problems()
    assert any("admin_key_file" in p and "at least 24 characters" in p for p in problems), problems


def audit_of(settings: Settings, admin_key: str, peer: str, headers: dict[str, str]) -> dict[str, object]:
    """The audit entry of one tenant created from `peer` with `headers`."""
    app = create_app(settings)
    auth = {"authorization": f"Bearer {admin_key}"}
    with TestClient(app, client=(peer, 40000)) as client:
        created = client.post(
            "/admin/tenants", json={"name": f"audit-{uuid.uuid4().hex}"}, headers={**auth, **headers}
        )
        assert created.status_code == 201, created.text
        events = client.get("/admin/audit", params={"target_id": created.json()["id"]}, headers=auth).json()
    return dict(events["data"][0])


def test_the_audit_log_believes_forwarded_headers_only_from_trusted_proxies(
    gateway_settings: Callable[..., Settings], admin_key: str
) -> None:
    settings = gateway_settings(trusted_proxies=["10.0.0.0/8"])
    forwarded = {"x-forwarded-for": "198.51.100.9, 203.0.113.7, 10.1.2.3", "x-forwarded-user": "alice"}
    via_proxy = audit_of(settings, admin_key, "10.0.0.2", forwarded)
    # The right-most address no trusted proxy wrote is the client's; what it wrote itself is ignored.
    assert via_proxy["client_ip"] == "203.0.113.7"
    assert via_proxy["actor"] == "admin:alice"
    direct = audit_of(settings, admin_key, "192.0.2.50", forwarded)
    assert direct["client_ip"] == "192.0.2.50"
    assert direct["actor"] == "admin"
