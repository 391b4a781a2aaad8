"""Redis dies mid-run: the chosen policy holds (fail-open serves unlimited, fail-closed answers 503),
the gateway neither crashes nor answers 500, and limiting comes back with Redis, without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer, envelope, wait_for
from tests.servers import ThreadedServer
from tests.services import RedisServer

pytestmark = pytest.mark.engine


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def chat(url: str, key: str, model: str, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return httpx.post(url + "/v1/chat/completions", headers=bearer(key), json=body, timeout=60)


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_killed_and_restarted(
    own_redis: RedisServer,
    engine_url: str,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    model: str,
    mode: str,
) -> None:
    settings = gateway_settings(engine_url=engine_url, redis_url=own_redis.url, limits_failure_mode=mode)
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        tenant = admin.tenant(f"outage-{mode}")
        key, _ = admin.key(tenant["id"], rpm=3)
        other, other_record = admin.key(tenant["id"])
        assert [chat(server.url, key, model).status_code for _ in range(3)] == [200, 200, 200]
        envelope(chat(server.url, key, model), 429)
        assert chat(server.url, other, model).status_code == 200  # cached now

        own_redis.kill()
        statuses = []
        for i in range(8):
            response = chat(server.url, key, model, stream=i % 2 == 1)
            statuses.append(response.status_code)
            if mode == "open":
                assert response.status_code == 200, response.text
                assert "x-ratelimit-limit-requests" not in response.headers
            else:
                error = envelope(response, 503)
                assert (error["type"], error["code"]) == ("server_error", "rate_limiter_unavailable")
                assert response.headers["retry-after"] == "1"
        assert all(status < 500 or status == 503 for status in statuses)
        # Authentication does not need Redis, and still refuses strangers.
        envelope(chat(server.url, "sk-tantra-stranger", model), 401)
        # A revocation made while Redis is down reaches this replica through the short cache TTL.
        admin.revoke(other_record["id"])
        waited = wait_for(lambda: chat(server.url, other, model).status_code == 401, timeout=3)
        assert waited < 1.5
        assert httpx.get(server.url + "/healthz").status_code == 200
        status = admin.http.get("/admin/status").json()
        assert status["redis"]["reachable"] is False
        assert status["limits"]["failed_open" if mode == "open" else "failed_closed"] >= 8

        own_redis.start()  # same port, empty: windows start afresh
        started = time.monotonic()
        wait_for(lambda: "x-ratelimit-limit-requests" in chat(server.url, key, model).headers, timeout=10)
        restored = time.monotonic() - started
        outcomes = [chat(server.url, key, model).status_code for _ in range(3)]
        assert outcomes[-1] == 429, outcomes
        assert admin.http.get("/admin/status").json()["redis"]["reachable"] is True
        admin.close()
    print(f"{mode}: limiting restored {restored:.2f}s after Redis came back")
