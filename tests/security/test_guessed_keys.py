"""Issue 16, point 9: guessed keys do not reach the database. Unknown keys from one client address
are counted in Redis (shared by replicas); past the allowance, keys that are not already cached get
429 without a lookup (counted in tantra_auth_failures_total), while a cached valid key still works
from that address; and unknown keys are cached apart, so a flood of them never evicts a valid key."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest
from starlette.testclient import TestClient

from gateway import Settings, create_app
from gateway.auth import PREFIX, KeyCache
from gateway.store import KeyRecord, Limits, Store
from tests.gateway.helpers import AdminClient, bearer, envelope, wait_for
from tests.servers import ThreadedServer


def _error(response: Any, status: int) -> dict[str, Any]:
    """`envelope` for the test client's responses (whose httpx is not the typed one)."""
    return envelope(cast(httpx.Response, response), status)


def _guess() -> dict[str, str]:
    return bearer(PREFIX + secrets.token_urlsafe(30))


@pytest.fixture(scope="module")
def offline_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    with ThreadedServer(create_app(gateway_settings(connect_timeout_s=1))) as server:
        yield server.url


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key hash looked up in the store."""
    seen: list[str] = []
    find_key = Store.find_key

    async def counting(self: Store, key_hash: str) -> KeyRecord | None:
        seen.append(key_hash)
        return await find_key(self, key_hash)

    monkeypatch.setattr(Store, "find_key", counting)
    return seen


def test_guessing_from_one_address_is_throttled_on_every_replica_without_lookups(
    gateway_settings: Callable[..., Settings], offline_gateway: str, admin_key: str, lookups: list[str]
) -> None:
    admin = AdminClient(offline_gateway, admin_key)
    try:
        key, _ = admin.key(admin.tenant("point-9-" + secrets.token_hex(4))["id"])
    finally:
        admin.close()
    # Short TTLs: the valid key's entry is stale by the time the address is throttled.
    settings = gateway_settings(
        auth_failures_per_address=5, auth_cache_ttl_s=0.2, auth_cache_degraded_ttl_s=0.2
    )
    address = (f"203.0.113.{secrets.randbelow(250) + 1}-{secrets.token_hex(4)}", 40000)
    with TestClient(create_app(settings), client=address) as replica:
        # Stale entries are served only while invalidations arrive.
        wait_for(
            lambda: replica.get("/admin/status", headers=bearer(admin_key)).json()["redis"][
                "invalidations_live"
            ]
        )
        assert replica.get("/v1/models", headers=bearer(key)).status_code != 401  # cached now
        for _ in range(5):
            assert _error(replica.get("/v1/models", headers=_guess()), 401)["code"] == "invalid_api_key"
        looked_up = len(lookups)
        for path in ("/v1/models", "/v1/chat/completions"):
            throttled = replica.request("GET" if path == "/v1/models" else "POST", path, headers=_guess())
            error = _error(throttled, 429)
            assert error["code"] == "too_many_auth_failures"
            assert int(throttled.headers["retry-after"]) >= 1
        assert len(lookups) == looked_up, "a throttled guess still reached the database"
        # The address's valid key is not locked out: its entry is stale, but nothing changed it.
        time.sleep(0.3)
        assert replica.get("/v1/models", headers=bearer(key)).status_code not in (401, 429)
        metrics = replica.get("/metrics").text
    assert 'tantra_auth_failures_total{outcome="throttled"} 2.0' in metrics
    assert 'tantra_auth_failures_total{outcome="unknown_key"} 5.0' in metrics
    # Another replica on the same Redis: one lookup learns the address is over, then none.
    with TestClient(create_app(settings), client=address) as other:
        _error(other.get("/v1/models", headers=_guess()), 401)
        looked_up = len(lookups)
        _error(other.get("/v1/models", headers=_guess()), 429)
        assert len(lookups) == looked_up


def test_unknown_keys_never_evict_a_valid_key_from_the_cache() -> None:
    cache = KeyCache(ttl_s=30, degraded_ttl_s=30, max_entries=2)
    valid = KeyRecord(
        key_id="k1",
        key_name="",
        tenant_id="t1",
        tenant_name="t",
        key_limits=Limits(),
        tenant_limits=Limits(),
        revoked_at=None,
        expires_at=None,
        superseded_until=None,
        tenant_disabled=False,
    )
    cache.put("valid", valid, cache.generation)
    for n in range(1000):
        cache.put(f"guess-{n}", None, cache.generation)
    assert cache.get("valid") == (True, valid)
    assert cache.get("guess-999") == (True, None)  # still remembered as unknown
