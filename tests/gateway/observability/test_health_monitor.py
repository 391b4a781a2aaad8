"""The deep health monitor against the session's real engine, a dead one, and an unreachable store
(the frozen-engine case, through /readyz, is in test_observability_readiness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.observability import GatewayMetrics, HealthMonitor, HealthPolicy
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from tests.servers import free_port

pytestmark = pytest.mark.engine

INTERVAL_S = 0.5
TIMEOUT_S = 2.0


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as http:
        yield http


def pool_of(client: httpx.AsyncClient, url: str) -> UpstreamPool:
    """The one vLLM server `engine` at `url`: what health checks probe."""
    policy = PoolPolicy(breaker_failures=3, breaker_open_s=5, max_outstanding=0)
    return UpstreamPool(client, {"engine": url}, {}, {}, policy)


async def test_a_healthy_engine_generates_a_token(
    client: httpx.AsyncClient, engine_url: str, model: str
) -> None:
    metrics = GatewayMetrics()

    async def store_ok() -> None:
        return None

    monitor = HealthMonitor(
        pool_of(client, engine_url),
        HealthPolicy(interval_s=INTERVAL_S, timeout_s=30, default_model=model),
        dependencies={"store": store_ok},
        metrics=metrics,
    )
    assert not monitor.report().ready  # nothing checked yet
    await monitor.check_now()
    report = monitor.report()
    assert report.ready, report.body()
    assert report.upstreams["engine"]["model"] == model
    assert report.dependencies == {"store": {"reachable": True, "reason": None}}
    assert 'tantra_upstream_healthy{upstream="engine"} 1.0' in metrics.render().decode()
    assert report.engines_ready and "tantra_engines_ready 1.0" in metrics.render().decode()


async def test_dead_engine_or_store_is_not_ready(client: httpx.AsyncClient, engine_url: str) -> None:
    async def store_down() -> None:
        raise ConnectionRefusedError("the database refused the connection")

    dead = HealthMonitor(pool_of(client, f"http://127.0.0.1:{free_port()}"), HealthPolicy(1, 2))
    await dead.check_now()
    report = dead.report()
    # The gateway itself is ready (no store to reach here); its engines are not (issue 26, point 6).
    assert report.ready and not report.engines_ready
    assert "ConnectError" in str(report.upstreams["engine"]["reason"])
    assert report.problems == []
    assert report.engine_problems == ["no healthy upstream serves the default model"]

    no_store = HealthMonitor(
        pool_of(client, engine_url), HealthPolicy(1, 30), dependencies={"store": store_down}
    )
    await no_store.check_now()
    report = no_store.report()
    assert not report.ready and report.engines_ready
    assert report.upstreams["engine"]["healthy"]
    assert report.problems == [
        "store is not reachable: ConnectionRefusedError: the database refused the connection"
    ]
