"""lm-eval's `local-chat-completions` model against the gateway (issue 23, point 8): the task file
shipped in evals/lm_eval runs offline (its dataset a local JSONL, no tokenizer download:
`tokenized_requests=False`, `tokenizer_backend=None`) through the session's gateway and engine with
the openai-style key lm-eval reads from OPENAI_API_KEY; the answers are the random model's, so only
the run is checked: every sample was asked through the gateway and scored by exact match."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import AdminClient

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[3]
LIMIT = 3


def test_lm_eval_runs_the_shipped_task_through_the_gateway(
    gateway_url: str, admin: AdminClient, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tenant = admin.tenant("lm-eval")["id"]
    secret, key = admin.key(tenant, "lm-eval")
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.chdir(ROOT)  # the task's data file is relative to the repository's root
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="local-chat-completions",
        model_args={
            "model": model,
            "base_url": f"{gateway_url}/v1/chat/completions",
            "tokenized_requests": False,
            "tokenizer_backend": None,
            "max_retries": 1,
        },
        tasks=["tantra_smoke"],
        task_manager=TaskManager(include_path=str(ROOT / "evals" / "lm_eval"), include_defaults=False),
        apply_chat_template=True,
        limit=LIMIT,
        log_samples=True,
    )
    assert results is not None
    scored = results["results"]["tantra_smoke"]
    assert 0.0 <= scored["exact_match,strip"] <= 1.0
    assert len(results["samples"]["tantra_smoke"]) == LIMIT
    usage = admin.http.get("/admin/usage", params={"key_id": key["id"], "group_by": "model"})
    assert usage.json()["data"][0]["requests"] == LIMIT, usage.text
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert httpx.get(f"{gateway_url}/v1/models").status_code == 401  # the key was needed
