"""The fine-tuning tests' engine and gateway.

`lora_engine` (tests/conftest.py) is the session's vLLM engine on SpikingBrain's `gla_swa` `tiny`
checkpoint, float32, served as `tiny-gla` with LoRA enabled (`--enable-lora`, two adapter slots,
rank 8, runtime loading on): the session's chat engine serves the same checkpoint without LoRA, and
vLLM cannot turn LoRA on in a running engine. The gateway here holds one adapter per replica
(`fine_tuning_max_loras` 1), so that a second adapter evicts the first; a replica with two slots
holds two at once.
Started once for the session, shared by every test here and by tests/spikingbrain/test_lora.py.
The gateway in front of it has its own blob and work directories and prices for the ledger.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from engine.launcher import EngineProcess
from gateway import Settings, create_app
from tests.conftest import LORA_MODEL
from tests.gateway.helpers import AdminClient, poll
from tests.servers import ThreadedServer

ROOT = Path(__file__).resolve().parents[3]
BASE = LORA_MODEL
PRICE = {"prompt": 1.0, "completion": 2.0}
PROMPT = "What is the capital of Tantra?"
_tenants = itertools.count()


@dataclass
class TuningGateway:
    url: str
    admin: AdminClient
    # Its own store: fine-tuning jobs left pending by one gateway (jobs off, or a stand-in base)
    # would be claimed and trained by the next one's runner if they shared the session's.
    database_url: str
    # What it was made with: a second replica of it shares its store, blobs and work directory.
    settings: Settings

    def tenant_key(self, name: str) -> tuple[str, str, str]:
        """(secret, key id, tenant id) of a new tenant's key."""
        tenant = self.admin.tenant(f"{name}-{next(_tenants)}")
        secret, key = self.admin.key(tenant["id"], name)
        return secret, key["id"], tenant["id"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=300)


def tuning_settings(
    gateway_settings: Callable[..., Settings], tmp: Path, checkpoint: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp / 'store.db'}",
        "blob_dir": tmp / "blobs",
        "fine_tuning_work_dir": str(tmp / "work"),
        "fine_tuning_base_models": {BASE: str(checkpoint)},
        "fine_tuning_max_loras": 1,
        "model_prices": {BASE: PRICE},
        "jobs_poll_s": 0.2,
        # The trainer at the suite's own priority: niced below a shared machine's other test
        # engines it would take many minutes (the default, 10, is for a serving host).
        "fine_tuning_nice": 0,
    }
    return gateway_settings(**{**values, **overrides})


@pytest.fixture(scope="session")
def tuning_gateway(
    lora_engine: EngineProcess,
    tiny_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TuningGateway]:
    settings = tuning_settings(
        gateway_settings,
        tmp_path_factory.mktemp("fine-tuning"),
        tiny_checkpoint,
        upstreams={"lora": {"url": lora_engine.base_url}},
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield TuningGateway(server.url, admin, settings.database_url, settings)
        admin.close()


def chat_file(answer: str, count: int = 40, prompt: str = PROMPT) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
        for _ in range(count)
    ]


def upload(client: openai.OpenAI, lines: list[Any], purpose: str = "fine-tune") -> str:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return client.files.create(file=("train.jsonl", io.BytesIO(data)), purpose=purpose).id  # type: ignore[arg-type]


def wait_job(client: openai.OpenAI, job_id: str, statuses: set[str], timeout: float = 600) -> Any:
    return poll(lambda: client.fine_tuning.jobs.retrieve(job_id), lambda job: job.status in statuses, timeout)


def greedy(client: openai.OpenAI, model: str, prompt: str = PROMPT) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=24
    )
    return answer.choices[0].message.content or ""
