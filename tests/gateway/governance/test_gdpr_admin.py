"""/admin/tenants/{id}/exports and /erasures on a real gateway (its engine down: nothing here needs a
model), real Redis and a SQLite store and blob directory of its own. Alice and Bob (end users named
by a trusted proxy's X-Forwarded-User, or by `safety_identifier`) of tenant T store files and
conversations through the real APIs; the export of Alice is a ZIP with her objects and none of
Bob's; her erasure's sweep is clean, her objects 404 through the APIs, Bob's still answer. Who may:
the admin key, an operator's panel session (with its CSRF token), a tenant admin for its own tenant
only (another is a 404), an auditor reading status but neither submitting nor downloading (403).
Bad bodies are 400s in OpenAI's envelope, never 422."""

from __future__ import annotations

import io
import json
import sqlite3
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.admin_ui.panel_client import Panel, make_user
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('gdpr') / 'gdpr.db'}"


@pytest.fixture(scope="module")
def url(
    gateway_settings: Callable[..., Settings], store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A gateway with its own store (its jobs are claimed by its own runner only) and blob directory."""
    settings = gateway_settings(
        connect_timeout_s=1,
        database_url=store_url,
        blob_dir=tmp_path_factory.mktemp("gdpr-blobs"),
        trusted_proxies=["127.0.0.1/32"],
        jobs_poll_s=0.05,
    )
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.fixture(scope="module")
def admin(url: str, admin_key: str) -> Iterator[AdminClient]:
    client = AdminClient(url, admin_key)
    yield client
    client.close()


@pytest.fixture(scope="module")
def tenants(admin: AdminClient) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in ("t", "u"):
        tenant = admin.tenant(f"gdpr-{name}")["id"]
        found[name] = tenant
        found[f"{name}_key"] = admin.key(tenant, "k")[0]
    return found


def _api(url: str, key: str, user: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"}
    if user is not None:
        headers["x-forwarded-user"] = user
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def _store_for(url: str, key: str, user: str) -> dict[str, str]:
    """A file and a conversation of `user`, through the Files and Conversations APIs."""
    with _api(url, key, user) as api:
        upload = api.post(
            "/v1/files",
            data={"purpose": "user_data"},
            files={"file": (f"{user}.txt", f"notes of {user}".encode(), "text/plain")},
        )
        assert upload.status_code == 200, upload.text
        conversation = api.post(
            "/v1/conversations",
            json={
                "safety_identifier": user,
                "items": [{"type": "message", "role": "user", "content": f"hi, I am {user}"}],
            },
        )
        assert conversation.status_code == 200, conversation.text
        line = {
            "custom_id": "1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gdpr-model", "messages": [{"role": "user", "content": "hi"}]},
        }
        lines = api.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={"file": ("lines.jsonl", json.dumps(line).encode() + b"\n", "application/jsonl")},
        )
        assert lines.status_code == 200, lines.text
        batch = api.post(
            "/v1/batches",
            json={
                "input_file_id": lines.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert batch.status_code == 200, batch.text
    return {
        "file": upload.json()["id"],
        "conversation": conversation.json()["id"],
        "batch": batch.json()["id"],
    }


def _wait(admin: AdminClient, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = admin.http.get(path).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"{path} did not finish")


def _ledger_users(
    store_url: str, tenant: str, until: Callable[[list[str | None]], bool] = lambda _: True
) -> list[str | None]:
    """The end users of the tenant's ledger rows, read from the gateway's SQLite file (the ledger is
    written in batches off the request path: waited for)."""
    path = store_url.removeprefix("sqlite+aiosqlite:///")
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(path) as db:
            query = "SELECT end_user FROM usage WHERE tenant_id = ?"
            users = [row[0] for row in db.execute(query, (tenant,))]
        if until(users) or time.monotonic() > deadline:
            return users
        time.sleep(0.05)


def test_export_and_erase_a_user_through_the_apis(
    url: str, admin: AdminClient, tenants: dict[str, Any], store_url: str
) -> None:
    t, key = tenants["t"], tenants["t_key"]
    alice, bob = _store_for(url, key, "alice"), _store_for(url, key, "bob")
    base = f"/admin/tenants/{t}"
    stored = _ledger_users(store_url, t, until=lambda users: users.count("alice") == users.count("bob") == 4)
    # Named in the body (the conversation's `safety_identifier`) or by the trusted proxy's header
    # (the two uploads, the conversation and the batch's creation).
    assert stored.count("alice") == stored.count("bob") == 4

    submitted = admin.http.post(f"{base}/exports", json={"user": "alice"})
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["object"] == "gdpr.export" and submitted.json()["status"] == "queued"
    job = _wait(admin, f"{base}/exports/{submitted.json()['id']}")
    assert job["status"] == "completed", job
    assert job["result"]["counts"]["files"] >= 2 and job["result"]["counts"]["batches"] == 1
    assert "blob_key" not in job["result"]
    assert job["result"]["counts"]["ledger"] == 4
    content = admin.http.get(f"{base}/exports/{job['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(content.content))
    assert archive.read(f"files/{alice['file']}/alice.txt") == b"notes of alice"
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert alice["conversation"].encode() in everything and b"hi, I am alice" in everything
    assert bob["file"].encode() not in everything and b"bob" not in everything

    erased = admin.http.post(f"{base}/erasures", json={"user_id": "alice"})
    assert erased.status_code == 200, erased.text
    job = _wait(admin, f"{base}/erasures/{erased.json()['id']}")
    assert job["status"] == "completed" and job["result"]["sweep"]["clean"] is True, job["result"]
    erased_counts = job["result"]["erased"]
    assert erased_counts["files"] >= 2 and erased_counts["conversations"] == erased_counts["batches"] == 1
    assert job["user"].startswith("user-")  # the name left the job's own row
    users = _ledger_users(store_url, t)
    assert "alice" not in users and users.count("bob") == 4
    assert len([user for user in users if user and user.startswith("erased-")]) == 4
    with _api(url, key) as api:
        assert api.get(f"/v1/files/{alice['file']}").status_code == 404
        assert api.get(f"/v1/conversations/{alice['conversation']}").status_code == 404
        assert api.get(f"/v1/files/{bob['file']}/content").content == b"notes of bob"
        assert api.get(f"/v1/conversations/{bob['conversation']}").status_code == 200
        assert api.get(f"/v1/batches/{alice['batch']}").status_code == 404
        assert api.get(f"/v1/batches/{bob['batch']}").status_code == 200
    # The earlier export went with her data.
    gone = admin.http.get(f"{base}/exports/{submitted.json()['id']}")
    assert gone.status_code == 404
    audit = admin.http.get("/admin/audit", params={"target_id": t}).json()["data"]
    actions = [entry["action"] for entry in audit]
    assert {"gdpr.export.requested", "gdpr.export.download", "gdpr.erase.requested", "gdpr.erase"} <= set(
        actions
    )
    assert "alice" not in str(audit)


def test_who_may(url: str, admin: AdminClient, tenants: dict[str, Any], store_url: str) -> None:
    t, u = tenants["t"], tenants["u"]
    for username, role, tenant in (
        ("gdpr-op", "operator", None),
        ("gdpr-ta", "tenant_admin", u),
        ("gdpr-aud", "auditor", None),
    ):
        make_user(store_url, username, role, tenant)

    def session(username: str) -> tuple[httpx.Client, str]:
        panel = Panel(url)
        assert panel.login(username).status_code == 303
        cookie = panel.http.cookies.get("tantra_admin_session")
        assert cookie
        client = httpx.Client(base_url=url, cookies={"tantra_admin_session": cookie}, timeout=30)
        return client, panel.csrf

    operator, op_csrf = session("gdpr-op")
    assert operator.post(f"/admin/tenants/{t}/exports", json={}).status_code == 403  # no CSRF token
    made = operator.post(f"/admin/tenants/{t}/exports", json={}, headers={"x-csrf-token": op_csrf})
    assert made.status_code == 200, made.text
    job = _wait(admin, f"/admin/tenants/{t}/exports/{made.json()['id']}")
    assert job["status"] == "completed" and job["result"]["counts"]["tenant"] == 2  # its row and its key
    entry = admin.http.get("/admin/audit", params={"action": "gdpr.export.requested"}).json()["data"][0]
    assert entry["actor"] == "user:gdpr-op"

    tenant_admin, ta_csrf = session("gdpr-ta")
    headers = {"x-csrf-token": ta_csrf}
    assert tenant_admin.post(f"/admin/tenants/{t}/erasures", json={}, headers=headers).status_code == 404
    assert tenant_admin.get(f"/admin/tenants/{t}/exports/{made.json()['id']}").status_code == 404
    own = tenant_admin.post(f"/admin/tenants/{u}/exports", json={"user": "nobody"}, headers=headers)
    assert own.status_code == 200, own.text

    auditor, aud_csrf = session("gdpr-aud")
    refused = auditor.post(f"/admin/tenants/{t}/erasures", json={}, headers={"x-csrf-token": aud_csrf})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
    assert auditor.get(f"/admin/tenants/{t}/exports/{made.json()['id']}").status_code == 200
    assert auditor.get(f"/admin/tenants/{t}/exports/{made.json()['id']}/content").status_code == 403
    for client in (operator, tenant_admin, auditor):
        client.close()


@pytest.mark.parametrize(
    "body", [{"user": 5}, {"user": ""}, {"tenant": "x"}, [1], {"user": "a", "user_id": "b"}, "not json"]
)
def test_bad_bodies_are_400s(admin: AdminClient, tenants: dict[str, Any], body: Any) -> None:
    path = f"/admin/tenants/{tenants['t']}/erasures"
    if isinstance(body, str):
        response = admin.http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = admin.http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknowns_and_no_key(url: str, admin: AdminClient, tenants: dict[str, Any]) -> None:
    assert admin.http.post("/admin/tenants/tn_nope/exports", json={}).status_code == 404
    assert admin.http.get(f"/admin/tenants/{tenants['t']}/erasures/job_nope").status_code == 404
    # An erasure's id is not an export's.
    erasure = admin.http.post(f"/admin/tenants/{tenants['u']}/erasures", json={"user": "ghost"}).json()
    assert admin.http.get(f"/admin/tenants/{tenants['u']}/exports/{erasure['id']}").status_code == 404
    assert httpx.post(f"{url}/admin/tenants/{tenants['t']}/exports", json={}).status_code == 401
    wrong = httpx.post(
        f"{url}/admin/tenants/{tenants['t']}/exports", headers={"authorization": "Bearer sk-no"}
    )
    assert wrong.status_code == 401
    # An end user with no data: an export that completes, with every kind empty.
    made = admin.http.post(f"/admin/tenants/{tenants['u']}/exports", json={"user": "casper"}).json()
    job = _wait(admin, f"/admin/tenants/{tenants['u']}/exports/{made['id']}")
    assert job["status"] == "completed" and set(job["result"]["counts"].values()) == {0}


def test_erasing_a_tenant_revokes_its_keys_at_once(
    url: str, admin: AdminClient, tenants: dict[str, Any]
) -> None:
    """Runs last: tenant U is erased. Its key, in the replica's key cache since its first use, is
    refused right after (the cache was told); its row stays, renamed and disabled."""
    u, key = tenants["u"], tenants["u_key"]
    carol = _store_for(url, key, "carol")
    made = admin.http.post(f"/admin/tenants/{u}/erasures")
    assert made.status_code == 200, made.text
    job = _wait(admin, f"/admin/tenants/{u}/erasures/{made.json()['id']}")
    assert job["status"] == "completed" and job["result"]["sweep"]["clean"] is True, job["result"]
    assert job["user"] is None and job["result"]["erased"]["files"] >= 2
    with _api(url, key) as api:
        assert api.get(f"/v1/files/{carol['file']}").status_code == 401
    tenant = admin.http.get(f"/admin/tenants/{u}").json()
    assert tenant["name"] == f"erased-{u}" and tenant["disabled"] is True
