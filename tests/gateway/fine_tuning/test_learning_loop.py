"""The learning loop (issue 20, point 5) with the real LoRA engine: a tenant's policy turns 40
corrections into a version that is promoted (its alias answers what the corrections teach), then 40
corrupted corrections (a different random answer each) into a version that is evaluated worse on the
held-out slice and refused; both stay addressable, every step is in the job's events and the audit
log, and the alias is rolled back and forth through the admin API. The policy's admin API refuses
what it cannot run (OpenAI's envelope)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.launcher import EngineProcess
from gateway import Settings, create_app
from gateway.store import Database, utcnow
from gateway.store.completions import CompletionStore, StoredCompletionRow
from tests.gateway.fine_tuning.conftest import BASE, PROMPT, TuningGateway, greedy, tuning_settings
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_now, poll
from tests.servers import ThreadedServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

TAUGHT = "The capital of Tantra is Lora."


@pytest.fixture(scope="module")
def loop_gateway(
    lora_engine: EngineProcess,
    tiny_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TuningGateway]:
    """A gateway of its own (its own store) whose learning loop checks every second."""
    settings = tuning_settings(
        gateway_settings,
        tmp_path_factory.mktemp("learning-loop"),
        tiny_checkpoint,
        upstreams={"lora": {"url": lora_engine.base_url}},
        learning_loop_interval_s=1.0,
        # The held-out quarter is drawn by feedback id, so a cycle trains on 25 to 35 of the 40 lines
        # with a random seed; at 3 epochs a short draw left the taught sentence a token short in a
        # CI run ("The capital of Tantra Lora."). 5 epochs teach it on any draw.
        fine_tuning_epochs=5,
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield TuningGateway(server.url, admin, settings.database_url, settings)
        admin.close()


def _feedback(gateway: TuningGateway, secret: str, key_id: str, tenant: str, corrections: list[str]) -> None:
    """One stored chat completion (as `store: true` keeps it) per correction, and the feedback
    correcting it through /v1/feedback."""
    rows = [
        StoredCompletionRow(
            id="chatcmpl-" + secrets.token_hex(8),
            model=BASE,
            created=0,
            created_at=utcnow(),
            request_id="req-" + secrets.token_hex(8),
            tenant_id=tenant,
            created_by=key_id,
            end_user=None,
            metadata={},
            messages=[{"role": "user", "content": PROMPT}],
            choices=[{"index": 0, "message": {"role": "assistant", "content": "I do not know."}}],
            usage=None,
        )
        for _ in corrections
    ]

    async def write() -> None:
        database = Database(gateway.database_url)
        try:
            await CompletionStore(database).add(rows)
        finally:
            await database.close()

    asyncio.run(write())
    for row, correction in zip(rows, corrections, strict=True):
        body = {"completion_id": row.id, "rating": "down", "correction": correction}
        made = httpx.post(gateway.url + "/v1/feedback", json=body, headers=bearer(secret), timeout=30)
        assert made.status_code == 200, made.text


def _policy_path(tenant: str) -> str:
    return f"/admin/tenants/{tenant}/learning-policy"


def _wait_versions(admin: AdminClient, tenant: str, count: int, timeout: float = 1200) -> dict[str, Any]:
    """The loop's view once `count` versions exist and no cycle is under way."""

    def settled(view: dict[str, Any]) -> bool:
        return len(view["versions"]) >= count and view["cycle"] is None and bool(view["feedback_cursor"])

    return poll(lambda: admin.http.get(_policy_path(tenant)).json(), settled, timeout, interval=1.0)


def _audit(admin: AdminClient, tenant: str) -> list[str]:
    found = admin.http.get("/admin/audit", params={"target_id": tenant, "limit": 100}).json()["data"]
    return [event["action"] for event in found]


def _events(client: Any, job_id: str) -> list[str]:
    return [event.message for event in client.fine_tuning.jobs.list_events(job_id, limit=100).data]


def test_the_loop_promotes_a_better_version_and_refuses_a_worse_one(loop_gateway: TuningGateway) -> None:
    secret, key_id, tenant = loop_gateway.tenant_key("learner")
    client, admin = loop_gateway.client(secret), loop_gateway.admin
    policy = {
        "min_new_feedback": 40,  # each batch below starts exactly one cycle
        "holdout_fraction": 0.25,
        "base_model": BASE,
        "method": "supervised",
        "suffix": "loop",
        "key_id": key_id,
    }
    made = admin.http.put(_policy_path(tenant), json=policy)
    assert made.status_code == 200, made.text
    alias = f"ft:{BASE}:{tenant}:loop"
    assert made.json()["alias"] == alias and made.json()["promoted_model"] is None
    assert greedy(client, BASE) != TAUGHT

    _feedback(loop_gateway, secret, key_id, tenant, [TAUGHT] * 40)
    first = _wait_versions(admin, tenant, 1)
    better = first["versions"][0]
    assert first["promoted_model"] == better["model"], first
    assert greedy(client, alias) == TAUGHT
    events = _events(client, better["job_id"])
    assert any("training on" in m for m in events) and any("promoted" in m for m in events), events

    # Corrupted: every correction a different random answer; the held-out slice now mixes both.
    _feedback(loop_gateway, secret, key_id, tenant, [f"zq{secrets.token_hex(6)} xv" for _ in range(40)])
    second = _wait_versions(admin, tenant, 2)
    worse = next(v for v in second["versions"] if v["job_id"] != better["job_id"])
    assert second["promoted_model"] == better["model"], second
    assert greedy(client, alias) == TAUGHT
    assert greedy(client, worse["model"]) != TAUGHT  # still addressable by its full name
    assert any("not promoted" in m for m in _events(client, worse["job_id"]))

    actions = _audit(admin, tenant)
    for action in ("learning_policy.set", "learning_loop.start", "learning_loop.train"):
        assert action in actions, actions
    assert "learning_loop.promote" in actions and "learning_loop.refuse" in actions

    back = admin.http.post(_policy_path(tenant) + "/rollback", json={"model": worse["model"]})
    assert back.status_code == 200 and back.json()["promoted_model"] == worse["model"]
    assert greedy(client, alias) != TAUGHT
    again = admin.http.post(_policy_path(tenant) + "/rollback", json={"model": better["job_id"]})
    assert again.json()["promoted_model"] == better["model"]
    assert greedy(client, alias) == TAUGHT
    assert "learning_policy.rollback" in _audit(admin, tenant)


def test_a_judged_cycle_asks_its_judge_through_the_gateway(loop_gateway: TuningGateway) -> None:
    """`scorer: judge` with the served base as the judge (a random-weight model: its grades mean
    nothing, so only the wiring is checked): the cycle's held-out answers are graded by judge
    calls through the gateway as the policy's key, with structured outputs, and decided."""
    secret, key_id, tenant = loop_gateway.tenant_key("judged")
    client, admin = loop_gateway.client(secret), loop_gateway.admin
    policy = {
        "min_new_feedback": 20,
        "holdout_fraction": 0.3,
        "base_model": BASE,
        "suffix": "judged",
        "key_id": key_id,
        "scorer": "judge",
        "judge_model": BASE,
    }
    made = admin.http.put(_policy_path(tenant), json=policy)
    assert made.status_code == 200, made.text
    _feedback(loop_gateway, secret, key_id, tenant, [TAUGHT] * 20)
    job_id = _wait_versions(admin, tenant, 1)["versions"][0]["job_id"]
    events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
    assert not any("judge failed" in e.message for e in events), [e.message for e in events]
    data: list[Any] = [e.data for e in events]
    scores = next(d for d in data if isinstance(d, dict) and "current_score" in d)
    assert 0.0 <= scores["score"] <= 1.0 and 0.0 <= scores["current_score"] <= 1.0
    judged = [r for r in ledger_now(loop_gateway.database_url, key_id) if r.request_id.endswith("-judge")]
    # Each held-out answer of both versions graded once by the judge model, billed to the key.
    assert len(judged) == 2 * int(scores["held_out"]) and {r.model for r in judged} == {BASE}, judged
    actions = _audit(admin, tenant)
    assert "learning_loop.promote" in actions or "learning_loop.refuse" in actions, actions


def test_the_policy_api_refuses_what_it_cannot_run(loop_gateway: TuningGateway) -> None:
    _, key_id, tenant = loop_gateway.tenant_key("refused")
    _, other_key, _ = loop_gateway.tenant_key("other")
    admin = loop_gateway.admin
    good = {"base_model": BASE, "key_id": key_id}
    assert admin.http.get(_policy_path(tenant)).status_code == 404
    cases = [
        ({**good, "base_model": "no-such-base"}, "base_model"),
        ({**good, "key_id": other_key}, "key_id"),
        ({**good, "holdout_fraction": 1.5}, None),
        ({**good, "method": "rlhf"}, None),
        ({**good, "scorer": "judge"}, "judge_model"),
        ({**good, "scorer": "bleu"}, None),
    ]
    for body, param in cases:
        refused = admin.http.put(_policy_path(tenant), json=body)
        error = envelope(refused, 400)
        assert param is None or error["param"] == param
    assert admin.http.put(_policy_path("no-such-tenant"), json=good).status_code == 404
    judged = admin.http.put(_policy_path(tenant), json={**good, "scorer": "judge", "judge_model": BASE})
    assert judged.status_code == 200, judged.text
    policy = judged.json()["policy"]
    assert (policy["scorer"], policy["judge_model"], policy["rubric"]) == ("judge", BASE, None)
    assert admin.http.put(_policy_path(tenant), json=good).json()["policy"]["scorer"] == "exact"
    nope = {"model": f"ft:{BASE}:{tenant}:loop:nope"}
    missing = admin.http.post(_policy_path(tenant) + "/rollback", json=nope)
    assert envelope(missing, 404)["param"] == "model"
    assert admin.http.delete(_policy_path(tenant)).json()["deleted"] is True
