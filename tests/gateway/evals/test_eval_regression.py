"""Acceptance (issue 23, point 8): an eval job detects a deliberately worse model version and raises
the alert, on the real LoRA engine of the session (gla_swa `tiny` as `tiny-gla`, runtime LoRA loading).

The construction, deterministic: the set's model is the adapter `assistant`. Version 1 is an adapter
whose B matrices are zero, so it answers exactly as the base model; the set's `exact` items expect
the base model's own greedy answers (asked first, through the gateway), so version 1 scores all of
them. Version 2 is the same adapter name loaded from another path with large random B matrices: its
answers change and the `exact` items fail. One `json_valid` item, its answer forced by structured
outputs to `{"ok": true|false}` and checked against a JSON schema, passes on both. The version is the
model card's `root` (the adapter's path). After the second run the regression shows in the run, in
`tantra_eval_regression` on /metrics and as the `eval regression` warning; the panel page charts it.

The gateway is this module's own, on its own SQLite store, so no other gateway of the session claims
its eval jobs (they would answer through another engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from engine.launcher import EngineProcess
from gateway import Settings, create_app
from tests.conftest import LORA_MODEL
from tests.gateway.admin_ui.panel_client import Panel, make_user
from tests.gateway.evals.adapters import write_adapter
from tests.gateway.helpers import AdminClient, wait_for
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine
BASE = LORA_MODEL
ADAPTER = "assistant"
PROMPTS = [
    "The capital of France is",
    "One, two, three,",
    "Water boils at",
    "My favourite colour",
    "Once upon",
]
OK = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def eval_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('evals') / 'store.db'}"


@pytest.fixture(scope="module")
def served(
    eval_store_url: str,
    lora_engine: EngineProcess,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
) -> Iterator[tuple[str, AdminClient, httpx.Client]]:
    settings = gateway_settings(
        engine_url=lora_engine.base_url,
        database_url=eval_store_url,
        models_ttl_s=0,
        admin_ui_enabled=True,
    )
    with ThreadedServer(create_app(settings)) as server, httpx.Client(timeout=120) as engine:
        yield server.url, AdminClient(server.url, admin_key), engine


def load(engine: httpx.Client, base_url: str, path: Path) -> None:
    engine.post(f"{base_url}/v1/unload_lora_adapter", json={"lora_name": ADAPTER})  # none the first time
    loaded = engine.post(
        f"{base_url}/v1/load_lora_adapter", json={"lora_name": ADAPTER, "lora_path": str(path)}
    )
    assert loaded.status_code == 200, loaded.text


def run(admin: AdminClient, set_id: str, runs_before: int) -> dict[str, Any]:
    started = admin.http.post(f"/admin/evals/sets/{set_id}/runs")
    assert started.status_code == 200, started.text

    def ran() -> bool:
        return len(admin.http.get(f"/admin/evals/sets/{set_id}/runs").json()["data"]) > runs_before

    wait_for(ran, timeout=300, interval=0.5)
    return dict(admin.http.get(f"/admin/evals/sets/{set_id}/runs").json()["data"][-1])


def test_a_worse_adapter_version_raises_the_alert(
    served: tuple[str, AdminClient, httpx.Client],
    eval_store_url: str,
    lora_engine: EngineProcess,
    tiny_checkpoint: Path,
    tmp_path: Path,
) -> None:
    url, admin, engine = served
    tenant = admin.tenant("evals")["id"]
    secret, key = admin.key(tenant, "evals")
    params = {"max_tokens": 4, "temperature": 0}
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {secret}"}, timeout=120) as client:
        expected = []
        for prompt in PROMPTS:  # the base model's own answers, one at a time
            body = {"model": BASE, "messages": [{"role": "user", "content": prompt}], **params}
            answer = client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            expected.append(answer.json()["choices"][0]["message"]["content"])
    pairs = zip(PROMPTS, expected, strict=True)
    lines = [{"input": p, "expected": e, "scorer": "exact", "params": params} for p, e in pairs]
    forced = {"max_tokens": 12, "structured_outputs": {"regex": r'\{"ok": (true|false)\}'}}
    lines.append({"input": "Is it fine?", "scorer": "json_valid", "schema": OK, "params": forced})
    jsonl = "\n".join(orjson.dumps(line).decode() for line in lines)

    load(engine, lora_engine.base_url, write_adapter(tmp_path / "v1", tiny_checkpoint, scale=0.0))
    body = {
        "name": "smoke",
        "model": ADAPTER,
        "jsonl": jsonl,
        "tenant_id": tenant,
        "key_id": key["id"],
        "margin": 0.3,
    }
    created = admin.http.post("/admin/evals/sets", json=body)
    assert created.status_code == 200, created.text
    set_id = created.json()["id"]

    first = run(admin, set_id, 0)
    assert first["version"].endswith("v1") and first["regression"] is False
    assert first["score"] >= 0.8, first["results"]  # the base model's answers, and the JSON

    load(engine, lora_engine.base_url, write_adapter(tmp_path / "v2", tiny_checkpoint, scale=5.0, seed=1))
    with capture_logs() as logs:
        second = run(admin, set_id, 1)
    assert second["version"].endswith("v2") and second["previous_version"] == first["version"]
    assert second["score"] < first["score"] - 0.3, second["results"]
    assert second["regression"] is True
    assert second["results"][-1]["score"] == 1.0  # the forced JSON still passes its schema
    warned = [e for e in logs if e.get("event") == "eval regression"]
    assert warned and warned[0]["log_level"] == "warning" and warned[0]["eval_set"] == set_id
    metrics = admin.http.get("/metrics").text
    assert f'tantra_eval_regression{{model="{ADAPTER}",set="{set_id}"}} 1.0' in metrics
    # The ledger has the run's requests as the set's key's (limits and billing apply).
    usage = admin.http.get(
        "/admin/usage", params={"tenant_id": tenant, "key_id": key["id"], "group_by": "model"}
    )
    rows = {row["model"]: row for row in usage.json()["data"]}
    assert rows[ADAPTER]["requests"] >= 2 * len(lines), rows
    # The panel's page charts both runs, the second one red.
    make_user(eval_store_url, "evals-owner", "owner")
    panel = Panel(url)
    assert panel.login("evals-owner").status_code == 303
    page = panel.http.get("/evals")
    panel.close()
    assert page.status_code == 200 and set_id in page.text and "<polyline" in page.text
    assert page.text.count("<circle") == 2 and "#cc0000" in page.text and "regression" in page.text


def test_bad_sets_get_openai_errors(served: tuple[str, AdminClient, httpx.Client]) -> None:
    _, admin, _ = served
    base = {"name": "bad", "model": ADAPTER}
    cases = [
        ({**base, "jsonl": "not json"}, 400),
        ({**base, "jsonl": '{"input": "x", "scorer": "nope"}'}, 400),
        ({**base, "jsonl": '{"input": "x", "scorer": "regex", "pattern": "("}'}, 400),
        ({**base, "jsonl": '{"input": "x"}'}, 400),  # exact without expected
        ({**base, "jsonl": '{"input": "x", "expected": "y"}', "key_id": "key_x"}, 400),
        ({**base, "jsonl": '{"input": "x", "expected": "y"}', "tenant_id": "tn_missing", "key_id": "k"}, 404),
        ({"name": "bad", "jsonl": "{}"}, 400),
    ]
    for body, status in cases:
        answer = admin.http.post("/admin/evals/sets", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert admin.http.get("/admin/evals/sets/evalset_missing").status_code == 404
    assert httpx.post(admin.http.base_url.join("/admin/evals/sets"), json=base).status_code == 401
