"""Every way a key can fail, each with OpenAI's status, envelope and headers; keys across the admin API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.servers import ThreadedServer

HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def offline_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    """A gateway whose engine is down: whatever fails here fails before the engine is asked."""
    with ThreadedServer(create_app(gateway_settings(connect_timeout_s=1))) as server:
        yield server.url


@pytest.fixture(scope="module")
def offline_admin(offline_gateway: str, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(offline_gateway, admin_key)
    yield client
    client.close()


def chat(url: str, headers: dict[str, str], model: str = "tantra-tiny", **body: object) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        headers=headers,
        json={"model": model, "messages": HELLO, "max_tokens": 2, **body},
        timeout=60,
    )


def unauthorized(response: httpx.Response) -> dict[str, object]:
    error = envelope(response, 401)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert response.headers["www-authenticate"] == 'Bearer realm="tantra"'
    return error


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/x"])
def test_missing_key(offline_gateway: str, path: str) -> None:
    method = "POST" if path.endswith("completions") else "GET"
    error = unauthorized(httpx.request(method, offline_gateway + path, json={}))
    assert error["code"] == "invalid_api_key"
    assert "didn't provide an API key" in str(error["message"])


def test_wrong_key_is_shown_redacted(offline_gateway: str) -> None:
    wrong = "sk-tantra-" + "Q" * 36 + "wxyz"
    error = unauthorized(chat(offline_gateway, bearer(wrong)))
    assert error["code"] == "invalid_api_key"
    assert "sk-tantra-QQQQ...wxyz" in str(error["message"])
    assert wrong not in str(error["message"])


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
def test_malformed_authorization(offline_gateway: str, header: str) -> None:
    assert unauthorized(chat(offline_gateway, {"authorization": header}))["code"] == "invalid_api_key"


def test_bad_body_without_key_is_still_401(offline_gateway: str) -> None:
    """Authentication comes first: nothing about the request is told to an unknown caller."""
    response = httpx.post(offline_gateway + "/v1/chat/completions", content=b"{not json")
    unauthorized(response)


@pytest.mark.parametrize("header", ["authorization", "api-key", "x-api-key"])
def test_each_header_carries_the_key(offline_gateway: str, offline_admin: AdminClient, header: str) -> None:
    tenant = offline_admin.tenant(f"headers-{header}")
    secret, _ = offline_admin.key(tenant["id"])
    value = f"Bearer {secret}" if header == "authorization" else secret
    # Past authentication: the offline engine is what fails now.
    assert envelope(chat(offline_gateway, {header: value}), 503)["code"] == "engine_unavailable"


def test_revoked_expired_and_deactivated(offline_gateway: str, offline_admin: AdminClient) -> None:
    tenant = offline_admin.tenant("lifecycle")
    revoked, record = offline_admin.key(tenant["id"])
    offline_admin.revoke(record["id"])
    assert "revoked" in str(unauthorized(chat(offline_gateway, bearer(revoked)))["message"])

    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    expired, _ = offline_admin.key(tenant["id"], expires_at=past)
    assert "expired" in str(unauthorized(chat(offline_gateway, bearer(expired)))["message"])

    soon = datetime.now(UTC) + timedelta(seconds=3)
    expiring, _ = offline_admin.key(tenant["id"], expires_at=soon.isoformat())
    assert chat(offline_gateway, bearer(expiring)).status_code == 503
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    assert "expired" in str(unauthorized(chat(offline_gateway, bearer(expiring)))["message"])

    live, _ = offline_admin.key(tenant["id"])
    assert chat(offline_gateway, bearer(live)).status_code == 503
    offline_admin.patch_tenant(tenant["id"], disabled=True)
    error = unauthorized(chat(offline_gateway, bearer(live)))
    assert error["code"] == "account_deactivated"
    offline_admin.patch_tenant(tenant["id"], disabled=False)
    assert chat(offline_gateway, bearer(live)).status_code == 503


def test_rotation(offline_gateway: str, offline_admin: AdminClient) -> None:
    tenant = offline_admin.tenant("rotation")
    first, record = offline_admin.key(tenant["id"])
    assert chat(offline_gateway, bearer(first)).status_code == 503
    second = offline_admin.rotate(record["id"])
    assert second != first and second.startswith("sk-tantra-")
    assert "Incorrect API key" in str(unauthorized(chat(offline_gateway, bearer(first)))["message"])
    assert chat(offline_gateway, bearer(second)).status_code == 503

    rotated = time.monotonic()
    third = offline_admin.rotate(record["id"], grace_seconds=3.0)
    assert chat(offline_gateway, bearer(second)).status_code == 503  # still in its grace period
    assert chat(offline_gateway, bearer(third)).status_code == 503
    time.sleep(max(0.0, rotated + 3.1 - time.monotonic()))
    assert "rotated" in str(unauthorized(chat(offline_gateway, bearer(second)))["message"])


def test_sdk_sees_authentication_error(offline_gateway: str) -> None:
    client = openai.OpenAI(base_url=offline_gateway + "/v1", api_key="sk-tantra-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="tantra-tiny", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


# The admin API --------------------------------------------------------------------------------


def test_admin_needs_the_admin_key(offline_gateway: str, offline_admin: AdminClient) -> None:
    error = unauthorized(httpx.get(offline_gateway + "/admin/tenants"))
    assert error["code"] == "invalid_api_key"
    unauthorized(httpx.get(offline_gateway + "/admin/tenants", headers=bearer("tantra-admin-wrong")))
    tenant = offline_admin.tenant("not-admin")
    tenant_key, _ = offline_admin.key(tenant["id"])
    unauthorized(httpx.get(offline_gateway + "/admin/keys", headers=bearer(tenant_key)))
    # An unauthenticated body is not even read.
    unauthorized(httpx.post(offline_gateway + "/admin/tenants", json={"nonsense": 1}))


def test_admin_disabled_without_a_key(gateway_settings: Callable[..., Settings]) -> None:
    with ThreadedServer(create_app(gateway_settings(admin_key=None))) as server:
        error = envelope(httpx.get(server.url + "/admin/tenants", headers=bearer("anything")), 403)
    assert (error["type"], error["code"]) == ("permission_error", "admin_disabled")


def test_admin_key_from_a_file(gateway_settings: Callable[..., Settings], tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "admin.key"
    path.write_text("tantra-admin-key-from-a-file\n")
    with ThreadedServer(create_app(gateway_settings(admin_key=None, admin_key_file=path))) as server:
        answer = httpx.get(server.url + "/admin/tenants", headers=bearer("tantra-admin-key-from-a-file"))
        assert answer.status_code == 200


def test_admin_key_from_a_file_refuses_any_other_key(
    gateway_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The file's key is the only one: another key, a prefix of it, or none is a 401, not an open API."""
    path = tmp_path / "admin.key"
    path.write_text("tantra-admin-key-from-a-file\n")
    with ThreadedServer(create_app(gateway_settings(admin_key=None, admin_key_file=path))) as server:
        url = server.url + "/admin/tenants"
        error = unauthorized(httpx.get(url, headers=bearer("tantra-admin-key-from-another-file")))
        assert error["code"] == "invalid_api_key"
        unauthorized(httpx.get(url, headers=bearer("tantra-admin-key-from-a-fil")))
        unauthorized(httpx.get(url))


def test_admin_errors(offline_gateway: str, offline_admin: AdminClient) -> None:
    http = offline_admin.http
    assert envelope(http.post("/admin/tenants", json={"name": ""}), 400)["param"] == "name"
    assert envelope(http.post("/admin/tenants", json={"name": "x", "rpm": 0}), 400)["param"] == "rpm"
    assert envelope(http.post("/admin/tenants", json={"name": "x", "color": 1}), 400)["param"] == "color"
    bad_json = http.post("/admin/tenants", content=b"{", headers={"content-type": "application/json"})
    assert envelope(bad_json, 400)["type"] == "invalid_request_error"
    offline_admin.tenant("dup")
    assert envelope(http.post("/admin/tenants", json={"name": "dup"}), 409)["code"] == "conflict"
    assert (
        envelope(http.post("/admin/keys", json={"tenant_id": "tn_nope"}), 404)["type"]
        == "invalid_request_error"
    )
    assert envelope(http.get("/admin/keys/key_nope"), 404)
    assert envelope(http.post("/admin/keys/key_nope/revoke"), 404)
    tenant = offline_admin.tenant("twice")
    _, key = offline_admin.key(tenant["id"])
    offline_admin.revoke(key["id"])
    assert envelope(http.post(f"/admin/keys/{key['id']}/revoke"), 409)["code"] == "conflict"
    assert envelope(http.post(f"/admin/keys/{key['id']}/rotate"), 409)
    assert envelope(http.get("/admin/usage", params={"group_by": "planet"}), 400)["param"] == "group_by"
    assert envelope(http.get("/admin/audit", params={"limit": 0}), 400)["param"] == "limit"


def test_keys_are_shown_once_and_stored_hashed(offline_admin: AdminClient, database_url: str) -> None:
    import asyncio

    from gateway.auth import hash_key
    from gateway.store import Database, Store

    tenant = offline_admin.tenant("hashing")
    secret, record = offline_admin.key(tenant["id"], name="ci", rpm=5, allowed_models=["tantra-tiny"])
    assert secret.startswith("sk-tantra-") and len(secret) == 50
    assert record["redacted"] == secret[:14] + "..." + secret[-4:]
    assert record["limits"]["rpm"] == 5 and record["limits"]["allowed_models"] == ["tantra-tiny"]
    listed = offline_admin.http.get("/admin/keys", params={"tenant_id": tenant["id"]}).json()["data"]
    assert [k["id"] for k in listed] == [record["id"]]
    assert secret not in offline_admin.http.get(f"/admin/keys/{record['id']}").text

    async def stored() -> tuple[str, str]:
        database = Database(database_url)
        try:
            key = await Store(database).get_key(record["id"])
            return key.key_hash, key.redacted
        finally:
            await database.close()

    key_hash, _ = asyncio.run(stored())
    assert key_hash == hash_key(secret) and secret not in key_hash


def test_audit_log(offline_admin: AdminClient) -> None:
    tenant = offline_admin.tenant("audited", tpm=1000)
    _, key = offline_admin.key(tenant["id"], name="k")
    offline_admin.patch_key(key["id"], rpm=9)
    offline_admin.rotate(key["id"])
    offline_admin.revoke(key["id"])
    events = offline_admin.http.get("/admin/audit", params={"target_id": key["id"]}).json()["data"]
    assert [e["action"] for e in events] == ["key.revoke", "key.rotate", "key.update", "key.create"]
    assert all(e["actor"] == "admin" and e["request_id"] and e["client_ip"] == "127.0.0.1" for e in events)
    assert events[2]["details"] == {"rpm": 9}
    created = offline_admin.http.get("/admin/audit", params={"target_id": tenant["id"]}).json()["data"]
    assert created[0]["action"] == "tenant.create" and created[0]["details"]["tpm"] == 1000
    page = offline_admin.http.get("/admin/audit", params={"limit": 2}).json()["data"]
    older = offline_admin.http.get("/admin/audit", params={"limit": 2, "before_id": page[-1]["id"]}).json()[
        "data"
    ]
    assert len(page) == 2 and older[0]["id"] < page[-1]["id"]


def test_limits_can_be_changed_and_removed(offline_admin: AdminClient) -> None:
    tenant = offline_admin.tenant("patching", rpm=10, tpm=100)
    changed = offline_admin.patch_tenant(tenant["id"], rpm=None, max_concurrent=3)
    assert changed["limits"]["rpm"] is None and changed["limits"]["tpm"] == 100
    assert changed["limits"]["max_concurrent"] == 3
    bad = offline_admin.http.patch(f"/admin/tenants/{tenant['id']}", json={"name": None})
    assert envelope(bad, 400)["param"] == "name"


def test_status(offline_admin: AdminClient) -> None:
    status = offline_admin.http.get("/admin/status").json()
    assert status["redis"] == {"reachable": True, "invalidations_live": True}
    assert status["limits"]["failure_mode"] == "open"
    assert {"pending", "written", "dropped", "failures"} <= set(status["ledger"])


# With the engine: models a key may use -----------------------------------------------------------


@pytest.mark.engine
def test_model_outside_the_allowed_list(gateway_url: str, admin: AdminClient, model: str) -> None:
    tenant = admin.tenant("allowed-models")
    other, _ = admin.key(tenant["id"], allowed_models=["some-other-model"])
    mine, _ = admin.key(tenant["id"], allowed_models=[model])

    # OpenAI's answer for a model the key cannot see: 404, worded as for a model that does not exist.
    error = envelope(chat(gateway_url, bearer(other), model), 404)
    unknown = envelope(chat(gateway_url, bearer(other), "no-such-model"), 404)
    assert error == {
        "message": f"The model `{model}` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert unknown == {**error, "message": error["message"].replace(model, "no-such-model")}
    assert chat(gateway_url, bearer(mine), model).status_code == 200
    listed = httpx.get(gateway_url + "/v1/models", headers=bearer(other)).json()["data"]
    assert listed == []
    assert envelope(httpx.get(gateway_url + f"/v1/models/{model}", headers=bearer(other)), 404) == error
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=other, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"

    # A tenant's list binds all its keys.
    admin.patch_tenant(tenant["id"], allowed_models=["some-other-model"])
    assert envelope(chat(gateway_url, bearer(mine), model), 404)["code"] == "model_not_found"


@pytest.mark.engine
def test_auth_off(gateway_settings: Callable[..., Settings], engine_url: str, model: str) -> None:
    settings = gateway_settings(engine_url=engine_url, auth_enabled=False)
    with ThreadedServer(create_app(settings)) as server:
        assert chat(server.url, {}, model).status_code == 200


def test_auth_off_still_locks_the_admin_api(
    gateway_settings: Callable[..., Settings], admin_key: str
) -> None:
    """auth_enabled=False opens /v1 only: /admin still wants the admin key, and a wrong one is a 401."""
    with ThreadedServer(create_app(gateway_settings(auth_enabled=False))) as server:
        url = server.url + "/admin/tenants"
        error = unauthorized(httpx.get(url, headers=bearer("tantra-admin-wrong")))
        assert error["code"] == "invalid_api_key"
        unauthorized(httpx.get(url))
        unauthorized(httpx.post(url, json={"name": "let-me-in"}))
        assert httpx.get(url, headers=bearer(admin_key)).status_code == 200


def test_bootstrap_for_make_run(tmp_path: object, offline_gateway: str, database_url: str) -> None:
    """`python -m gateway bootstrap` (what `make run` calls): keys made once, kept after."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    state = Path(str(tmp_path))
    # As scripts/run.sh calls it: the settings name the admin key file that bootstrap makes.
    env = {
        **os.environ,
        "TANTRA_DATABASE_URL": database_url,
        "TANTRA_ADMIN_KEY_FILE": str(state / "admin.key"),
    }
    command = [sys.executable, "-m", "gateway", "bootstrap", "--admin-key-file", str(state / "admin.key"),
               "--dev-key-file", str(state / "dev.key"), "--tenant", "bootstrap-test"]  # fmt: skip
    subprocess.run(command, env=env, check=True, timeout=60)
    dev_key = (state / "dev.key").read_text().strip()
    admin_key = (state / "admin.key").read_text().strip()
    assert dev_key.startswith("sk-tantra-") and admin_key.startswith("tantra-admin-")
    assert (state / "dev.key").stat().st_mode & 0o777 == 0o600
    subprocess.run(command, env=env, check=True, timeout=60)
    assert (state / "dev.key").read_text().strip() == dev_key  # a working key is kept
    assert chat(offline_gateway, bearer(dev_key)).status_code == 503  # authenticated; no engine here


def test_database_down_is_503(gateway_settings: Callable[..., Settings]) -> None:
    from tests.servers import free_port

    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/tantra"
    settings = gateway_settings(database_url=nowhere, database_auto_migrate=False)
    with ThreadedServer(create_app(settings)) as server:
        error = envelope(chat(server.url, bearer("sk-tantra-" + "x" * 40)), 503)
        assert (error["type"], error["code"]) == ("server_error", "store_unavailable")
        admin = httpx.get(server.url + "/admin/tenants", headers=bearer(settings.resolved_admin_key() or ""))
        assert envelope(admin, 503)["code"] == "store_unavailable"


def test_admin_values_out_of_range_are_400(offline_admin: AdminClient) -> None:
    http = offline_admin.http
    huge = {"name": "huge", "tpm": 2**100}
    assert envelope(http.post("/admin/tenants", json=huge), 400)["param"] == "tpm"
    tenant = offline_admin.tenant("in-range")
    assert envelope(http.patch(f"/admin/tenants/{tenant['id']}", json={"budget_tokens": 2**70}), 400)
    assert envelope(http.get("/admin/audit", params={"before_id": 2**70}), 400)["param"] == "before_id"
