"""The panel's views of stored objects and its GDPR jobs, over HTTP on a real gateway (its engine
down: nothing here needs a model), real Redis, a SQLite store and blob directory of its own.

Files and a batch are made through the real APIs (so the batch names its real input file); the kinds
that need a model to exist (responses, fine-tuning jobs, stored completions, moderation flags) are
written as their stores write them. An operator lists every kind with filters and pages and follows
the links between objects; a tenant admin sees its own tenant's only, another tenant's object id is
a 404. From the stored-data page an operator exports an end user (the ZIP downloaded, audited with
the actor) and erases them (only with the id typed again); an auditor starts neither.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway import Settings
from gateway.store import Database
from gateway.store.completions import StoredCompletion
from gateway.store.fine_tuning import FineTuningJobRow
from gateway.store.moderation import StoredFlag
from gateway.store.responses import StoredResponse
from tests.gateway.admin_ui.panel_client import Panel, PanelGateway, panel_gateway


@dataclass
class Objects:
    gw: PanelGateway
    t: str
    u: str
    files: dict[str, str]  # owner name: file id
    batch: str


def _write(database_url: str, rows: list[Any]) -> None:
    async def write() -> None:
        database = Database(database_url)
        try:
            async with database.session() as session, session.begin():
                session.add_all(rows)
        finally:
            await database.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()


def _owned(kind: str, n: int, tenant: str, user: str | None, **fields: Any) -> dict[str, Any]:
    at = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=n)
    return {"id": f"{kind}-{n}-{tenant}", "tenant_id": tenant, "end_user": user, "created_at": at, **fields}


def _seed(gw: PanelGateway, t: str, u: str, training_file: str) -> None:
    rows: list[Any] = [
        StoredResponse(
            **_owned("resp", 1, t, "alice"),
            tags={},
            model="m",
            status="completed",
            background=True,
            input_items=[{"type": "message"}],
            body={"output": []},
        ),
        StoredResponse(
            **_owned("resp", 2, t, "alice", previous_response_id=f"resp-1-{t}"),
            tags={},
            model="m",
            status="failed",
            input_items=[],
            body={},
        ),
        FineTuningJobRow(
            **_owned("ftjob", 1, t, None),
            tags={},
            model="base",
            training_file=training_file,
            seed=1,
            method={"type": "supervised"},
            status="succeeded",
            fine_tuned_model="ft:base:tantra:x",
        ),
        StoredCompletion(
            **_owned("chatcmpl", 1, u, "carol"),
            tags={},
            model="m",
            created=int(time.time()),
            request_id="req-1",
            messages=[{"role": "user", "content": "secret words"}],
            choices=[],
        ),
    ]
    rows += [
        StoredFlag(
            **_owned("modflag", n, t, "alice"),
            endpoint="/v1/chat/completions",
            stage="input",
            action="blocked" if n % 2 else "flagged",
            categories=["violence"],
            scores={"violence": 0.9},
        )
        for n in range(1, 56)
    ]
    _write(gw.database_url, rows)


def _upload(url: str, key: str, user: str, name: str, content: bytes, purpose: str) -> str:
    headers = {"authorization": f"Bearer {key}", "x-forwarded-user": user}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
        made = api.post("/v1/files", data={"purpose": purpose}, files={"file": (name, content, "text/plain")})
        assert made.status_code == 200, made.text
        return str(made.json()["id"])


@pytest.fixture(scope="module")
def objects(
    gateway_settings: Callable[..., Settings], admin_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Objects]:
    tmp = tmp_path_factory.mktemp("panel-objects")
    settings = {
        "blob_dir": tmp / "blobs",
        "trusted_proxies": ["127.0.0.1/32"],
        "jobs_enabled": True,
        "jobs_poll_s": 0.05,
        "connect_timeout_s": 1,
        # Off, so the navigation's links to their pages go too.
        "pii_enabled": False,
        "retention_enabled": False,
    }
    with panel_gateway(gateway_settings, admin_key, tmp, **settings) as gw:
        t, u = gw.admin.tenant(f"obj-t-{gw.suffix}")["id"], gw.admin.tenant(f"obj-u-{gw.suffix}")["id"]
        t_key, u_key = gw.admin.key(t)[0], gw.admin.key(u)[0]
        files = {
            "alice": _upload(gw.url, t_key, "alice", "alice.txt", b"notes of alice", "user_data"),
            "bob": _upload(gw.url, t_key, "bob", "bob.txt", b"notes of bob", "user_data"),
            "carol": _upload(gw.url, u_key, "carol", "carol.txt", b"notes of carol", "user_data"),
        }
        line = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}
        lines = _upload(gw.url, t_key, "alice", "lines.jsonl", json.dumps(line).encode() + b"\n", "batch")
        with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {t_key}"}) as api:
            body = {"input_file_id": lines, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
            batch = api.post("/v1/batches", json=body)
            assert batch.status_code == 200, batch.text
        _seed(gw, t, u, files["alice"])
        gw.user("operator", "operator")
        gw.user("auditor", "auditor")
        gw.user("tenant", "tenant_admin", u)
        yield Objects(gw, t, u, files, batch.json()["id"])


def ids(html: str) -> list[str]:
    return re.findall(r'class="object" data-id="([^"]+)"', html)


def field(html: str, name: str) -> str:
    found = re.search(rf'data-field="{name}">(.*?)</td>', html, re.S)
    assert found is not None, html
    return found.group(1)


@pytest.fixture(scope="module")
def operator(objects: Objects) -> Iterator[Panel]:
    panel = objects.gw.panel(f"operator-{objects.gw.suffix}")
    yield panel
    panel.close()


def test_lists_with_filters(objects: Objects, operator: Panel) -> None:
    files = operator.http.get("/stored/files")
    assert files.status_code == 200, files.text
    assert set(objects.files.values()) <= set(ids(files.text))
    mine = ids(operator.http.get("/stored/files", params={"tenant_id": objects.u}).text)
    assert mine == [objects.files["carol"]]
    bob = ids(operator.http.get("/stored/files", params={"user": "bob"}).text)
    assert bob == [objects.files["bob"]]
    failed = ids(operator.http.get("/stored/responses", params={"status": "failed"}).text)
    assert failed == [f"resp-2-{objects.t}"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ids(operator.http.get("/stored/responses", params={"since": tomorrow}).text) == []
    today = datetime.now(UTC).date().isoformat()
    assert (
        len(ids(operator.http.get("/stored/responses", params={"until": tomorrow, "since": today}).text)) == 2
    )
    assert operator.http.get("/stored/responses", params={"since": "yesterday"}).status_code == 400
    assert operator.http.get("/stored/nothing").status_code == 404
    completions = operator.http.get("/stored/completions")
    assert ids(completions.text) == [f"chatcmpl-1-{objects.u}"]


def test_pages_of_flags(objects: Objects, operator: Panel) -> None:
    first = operator.http.get("/stored/moderation_flags", params={"tenant_id": objects.t})
    seen = ids(first.text)
    assert len(seen) == 50 and seen[0] == f"modflag-1-{objects.t}"  # newest first
    older = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert older is not None
    second = operator.http.get(older.group(1).replace("&amp;", "&").removeprefix("/admin/ui"))
    rest = ids(second.text)
    assert len(rest) == 5 and not set(rest) & set(seen) and 'id="next-page"' not in second.text
    blocked = ids(operator.http.get("/stored/moderation_flags", params={"status": "blocked"}).text)
    assert len(blocked) == 28


def test_details_link_objects(objects: Objects, operator: Panel) -> None:
    batch = operator.http.get(f"/stored/batches/{objects.batch}")
    assert batch.status_code == 200, batch.text
    link = field(batch.text, "input_file_id")
    assert "/admin/ui/stored/files/" in link
    input_file = re.search(r'href="/admin/ui(/stored/files/[^"]+)"', link)
    assert input_file is not None
    shown = operator.http.get(input_file.group(1))
    assert shown.status_code == 200 and field(shown.text, "purpose") == "batch"
    assert "blob_key" not in shown.text
    job = operator.http.get(f"/stored/fine_tuning/ftjob-1-{objects.t}")
    assert objects.files["alice"] in field(job.text, "training_file")
    assert field(job.text, "fine_tuned_model") == "ft:base:tantra:x"
    response = operator.http.get(f"/stored/responses/resp-2-{objects.t}")
    assert f"/stored/responses/resp-1-{objects.t}" in field(response.text, "previous_response_id")
    completion = operator.http.get(f"/stored/completions/chatcmpl-1-{objects.u}")
    assert "secret words" not in completion.text and "bytes" in field(completion.text, "messages")
    assert operator.http.get("/stored/files/file-nothing").status_code == 404


def test_a_tenant_admin_sees_its_own_tenant_only(objects: Objects) -> None:
    tenant = objects.gw.panel(f"tenant-{objects.gw.suffix}")
    try:
        assert ids(tenant.http.get("/stored/files").text) == [objects.files["carol"]]
        tampered = tenant.http.get("/stored/files", params={"tenant_id": objects.t})
        assert ids(tampered.text) == [objects.files["carol"]]
        assert tenant.http.get(f"/stored/files/{objects.files['alice']}").status_code == 404
        assert tenant.http.get(f"/stored/batches/{objects.batch}").status_code == 404
        assert tenant.http.get(f"/stored/files/{objects.files['carol']}").status_code == 200
        # Nor another tenant's GDPR jobs.
        erase = tenant.post(f"/data/{objects.t}/erasures", user="alice", confirm="alice")
        assert erase.status_code == 404
    finally:
        tenant.close()


def test_the_navigation_links_only_to_pages_served(operator: Panel) -> None:
    page = operator.http.get("/stored").text
    assert "/admin/ui/stored/fine_tuning" in page
    assert 'href="/admin/ui/pii"' not in page
    assert 'href="/admin/ui/retention"' not in page


def _wait(panel: Panel, path: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = panel.http.get(path)
        assert page.status_code == 200, page.text
        status = re.search(r'id="job-status">([^<]+)<', page.text)
        assert status is not None
        if status.group(1) in ("completed", "failed", "cancelled"):
            return page.text
        time.sleep(0.1)
    raise AssertionError(f"{path} did not finish")


def test_export_and_erase_from_the_panel(objects: Objects, operator: Panel) -> None:
    t = objects.t
    data = operator.http.get("/data", params={"tenant_id": t, "user": "bob"})
    assert 'id="start-export"' in data.text and 'id="start-erasure"' in data.text
    started = operator.post(f"/data/{t}/exports", user="bob")
    assert started.status_code == 303, started.text
    job_page = started.headers["location"].removeprefix("/admin/ui")
    page = _wait(operator, job_page)
    assert "completed" in page
    link = re.search(r'id="download" href="/admin/ui([^"]+)"', page)
    assert link is not None
    content = operator.http.get(link.group(1))
    assert content.status_code == 200 and content.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(content.content))
    assert archive.read(f"files/{objects.files['bob']}/bob.txt") == b"notes of bob"
    audit = objects.gw.admin.http.get("/admin/audit", params={"target_id": t}).json()["data"]
    downloads = [e for e in audit if e["action"] == "gdpr.export.download"]
    assert downloads and downloads[0]["actor"] == f"user:operator-{objects.gw.suffix}"

    unconfirmed = operator.post(f"/data/{t}/erasures", user="bob", confirm="bo")
    assert unconfirmed.status_code == 400
    assert operator.post(f"/data/{t}/erasures", csrf="forged", user="bob", confirm="bob").status_code == 403
    erased = operator.post(f"/data/{t}/erasures", user="bob", confirm="bob")
    assert erased.status_code == 303, erased.text
    page = _wait(operator, erased.headers["location"].removeprefix("/admin/ui"))
    assert "completed" in page and '"clean": true' in page.replace("&#34;", '"')
    assert operator.http.get(f"/stored/files/{objects.files['bob']}").status_code == 404
    assert operator.http.get(f"/stored/files/{objects.files['alice']}").status_code == 200
    requested = objects.gw.admin.http.get("/admin/audit", params={"action": "gdpr.erase.requested"}).json()
    assert requested["data"][0]["actor"] == f"user:operator-{objects.gw.suffix}"


def test_an_auditor_starts_no_job(objects: Objects) -> None:
    auditor = objects.gw.panel(f"auditor-{objects.gw.suffix}")
    try:
        data = auditor.http.get("/data", params={"tenant_id": objects.t})
        assert data.status_code == 200 and 'id="start-export"' not in data.text
        assert auditor.post(f"/data/{objects.t}/exports", user="alice").status_code == 403
        assert auditor.post(f"/data/{objects.t}/erasures", user="alice", confirm="alice").status_code == 403
    finally:
        auditor.close()
