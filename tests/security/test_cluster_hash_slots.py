"""Issue 16, point 16 (Redis Cluster): every limiter script touches several keys at once (a key's and
its tenant's windows, slots and budgets). Redis Cluster runs a script only when all its keys live in
one hash slot, so every key of one tenant's requests carries the tenant's hash tag."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.crc import key_slot
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.security.fake_engine import MODEL, FakeEngine
from tests.servers import ThreadedServer
from tests.services import RedisServer

LIMITS = {"rpm": 100, "tpm": 100_000, "max_concurrent": 4, "budget_tokens": 1_000_000}


@pytest.fixture(scope="module")
def engine_url() -> Iterator[str]:
    with ThreadedServer(FakeEngine().app) as server:
        yield server.url


def test_every_key_of_a_tenants_requests_shares_one_hash_slot(
    gateway_settings: Callable[..., Settings], engine_url: str, admin_key: str, redis_server: RedisServer
) -> None:
    admin = {"authorization": f"Bearer {admin_key}"}
    with TestClient(create_app(gateway_settings(engine_url=engine_url))) as client:
        tenant = client.post(
            "/admin/tenants", json={"name": f"slots-{uuid.uuid4().hex}", **LIMITS}, headers=admin
        ).json()
        key = client.post("/admin/keys", json={"tenant_id": tenant["id"], **LIMITS}, headers=admin).json()
        for _ in range(2):
            answer = client.post(
                "/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
                headers={"authorization": f"Bearer {key['key']}"},
            )
            assert answer.status_code == 200, answer.text

    store = redis.Redis.from_url(redis_server.url)
    try:
        names = [
            name.decode()
            for name in store.scan_iter(count=1000)
            if tenant["id"].encode() in name or key["id"].encode() in name
        ]
    finally:
        store.close()
    # The key's and the tenant's request logs, token logs and budgets at the least.
    assert len(names) >= 6, names
    slots = {name: key_slot(name.encode()) for name in names}
    assert len(set(slots.values())) == 1, f"the keys of one tenant span several hash slots: {slots}"
