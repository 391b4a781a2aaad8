"""A gateway of its own for the Batch API tests: the session's chat engine and embedding engine and
Redis, a SQLite store of its own, prices for the ledger's batch discount. The store is its own
because any gateway on a store may claim its jobs: the session's chat-only gateway, on the shared
store, once claimed the embeddings batch and failed every line as an unknown model."""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

_tenants = itertools.count()
# USD per million tokens: one prompt token costs one micro-dollar.
PRICE = {"prompt": 1.0, "completion": 2.0}


@dataclass
class BatchGateway:
    url: str
    admin: AdminClient
    database_url: str

    def tenant_key(self, name: str) -> tuple[str, str]:
        tenant = self.admin.tenant(f"{name}-{next(_tenants)}")
        secret, key = self.admin.key(tenant["id"], name)
        return secret, key["id"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def batch_gateway(
    engine_url: str,
    embedding_engine_url: str,
    model: str,
    embedding_model: str,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BatchGateway]:
    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('batches') / 'store.db'}"
    settings = gateway_settings(
        database_url=database_url,
        upstreams={"engine": {"url": engine_url}, "embedding": {"url": embedding_engine_url}},
        routing={"default_model": model},
        model_prices={model: PRICE, embedding_model: PRICE},
        jobs_poll_s=0.2,
        batch_lines_per_step=8,
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield BatchGateway(server.url, admin, database_url)
        admin.close()


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.files.create(file=("input.jsonl", io.BytesIO(jsonl(lines))), purpose="batch").id


def wait_until(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(0.3)


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines() if line]
