"""GDPR erasure of what a real chat request stores: the session's gateway and vLLM engine (no engine
of its own), a tenant of this test's own. Two end users chat through the openai SDK with
`store: true` and `user`; the export of one holds her stored completion and her ledger row (its
`end_user` from the body's `user`); her erasure's sweep is clean, her completion is a 404 through the
SDK while his still answers, and the tenant's billed tokens and cost are unchanged."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import openai
import pytest

from tests.conftest import MODEL
from tests.gateway.helpers import AdminClient


def _wait(admin: AdminClient, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = admin.http.get(path).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{path} did not finish")


def _stored(client: openai.OpenAI, ids: list[str]) -> tuple[bool, int]:
    """Whether every id can be retrieved yet, and how many requests that took."""
    for made, completion_id in enumerate(ids, start=1):
        try:
            client.chat.completions.retrieve(completion_id)
        except openai.NotFoundError:
            return False, made
    return True, len(ids)


def _totals(admin: AdminClient, tenant: str) -> tuple[int, int, float]:
    rows = admin.http.get("/admin/usage", params={"group_by": "tenant", "tenant_id": tenant}).json()["data"]
    return (
        sum(row["requests"] for row in rows),
        sum(row["prompt_tokens"] + row["completion_tokens"] for row in rows),
        sum(row["cost_usd"] for row in rows),
    )


def test_erasing_a_user_of_real_chat_requests(gateway_url: str, admin: AdminClient) -> None:
    tenant = admin.tenant(f"gdpr-engine-{uuid.uuid4().hex[:8]}")["id"]
    secret, _ = admin.key(tenant, "gdpr")
    base = f"/admin/tenants/{tenant}"
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key=secret, max_retries=0, timeout=120) as client:
        stored = {
            user: client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Hello, I am {user}."}],
                max_completion_tokens=2,
                store=True,
                user=user,
            ).id
            for user in ("eve", "frank")
        }
        deadline = time.monotonic() + 10
        while _totals(admin, tenant)[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Stored completions are written in batches, apart from the ledger: wait for both rows. Each
        # retrieve is a (free) ledger row of its own, counted in `calls`.
        calls = 0
        while True:
            ready, made = _stored(client, list(stored.values()))
            calls += made
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        while _totals(admin, tenant)[0] < 2 + calls and time.monotonic() < deadline:
            time.sleep(0.1)
        before = _totals(admin, tenant)
        assert before[0] == 2 + calls

        made = admin.http.post(f"{base}/exports", json={"user": "eve"}).json()
        job = _wait(admin, f"{base}/exports/{made['id']}")
        assert job["status"] == "completed", job
        archive = zipfile.ZipFile(io.BytesIO(admin.http.get(f"{base}/exports/{job['id']}/content").content))
        completions = json.loads(archive.read("chat_completions.json"))["chat_completions"]
        assert [row["id"] for row in completions] == [stored["eve"]]
        ledger = json.loads(archive.read("ledger.json"))["ledger"]
        assert [row["end_user"] for row in ledger] == ["eve"] and ledger[0][
            "endpoint"
        ] == "/v1/chat/completions"

        made = admin.http.post(f"{base}/erasures", json={"user": "eve"}).json()
        job = _wait(admin, f"{base}/erasures/{made['id']}")
        assert job["status"] == "completed" and job["result"]["sweep"]["clean"] is True, job["result"]
        assert job["result"]["erased"]["chat_completions"] == 1 and job["result"]["erased"]["ledger"] == 1
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.retrieve(stored["eve"])
        assert client.chat.completions.retrieve(stored["frank"]).id == stored["frank"]
    # The billed tokens and cost are unchanged; the two retrieves above are two more (free) rows.
    after = _totals(admin, tenant)
    assert after[1:] == before[1:] and after[0] == before[0] + 2
