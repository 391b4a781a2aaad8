"""The upstream side of the composition root: the pool, its dispatcher and catalogue, and the health
monitor, built from the settings; the retry and timeout clocks read the live settings on each call.
The health probes get a client of their own here, which the pool closes."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from gateway.clients import probe_client
from gateway.observability import GatewayMetrics, HealthMonitor, HealthPolicy
from gateway.settings.reload import LiveConfig
from gateway.settings.schema import Settings
from gateway.store import Database
from gateway.upstreams import ModelCatalog
from gateway.upstreams.coldstart import ColdStart
from gateway.upstreams.dispatch import Dispatcher, RetryPolicy
from gateway.upstreams.endpointslices import KubernetesApi
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from gateway.upstreams.retry import RetryBudget
from gateway.upstreams.timeouts import Timeouts


def upstreams(
    settings: Settings,
    live: LiveConfig[Settings],
    client: httpx.AsyncClient,
    metrics: GatewayMetrics,
    *,
    own_probes: bool = True,
) -> tuple[UpstreamPool, Dispatcher, ModelCatalog]:
    """`own_probes`: the health probes on a client of their own (off when the caller hands in
    the engine client, a test's stand-in, which the probes must reach too)."""
    pool = UpstreamPool(
        client,
        settings.upstream_urls(),
        settings.upstreams,
        settings.models,
        PoolPolicy(
            breaker_failures=settings.breaker_failures,
            breaker_open_s=settings.breaker_open_s,
            max_outstanding=settings.upstream_max_outstanding,
            discovery_nameserver=settings.discovery_nameserver,
            kubernetes=KubernetesApi.in_cluster(
                settings.discovery_kubernetes_api,
                settings.discovery_kubernetes_token_file,
                settings.discovery_kubernetes_ca_file,
            ),
        ),
        metrics,
        probes=probe_client(settings) if own_probes else None,
    )
    cold_start = ColdStart(pool, settings.cold_start_wait_s, metrics)
    dispatcher = Dispatcher(
        pool,
        budget=RetryBudget(
            ratio=settings.retry_budget_ratio,
            window_s=settings.retry_budget_window_s,
            minimum=settings.retry_budget_min,
        ),
        retry=lambda: _retry_policy(live.current),
        timeouts=lambda: _timeouts(live.current),
        metrics=metrics,
        cold_start=cold_start,
    )
    catalog = ModelCatalog(
        lambda: pool.list_models(settings.connect_timeout_s), settings.models_ttl_s, cold_start.hold
    )
    return pool, dispatcher, catalog


def health_monitor(
    settings: Settings,
    live: LiveConfig[Settings],
    pool: UpstreamPool,
    database: Database,
    redis: Redis,
    metrics: GatewayMetrics,
) -> HealthMonitor:
    """Its upstreams are the pool's, and follow its reconfigurations; its clocks follow reloads."""
    return HealthMonitor(
        pool,
        lambda: _health_policy(live.current),
        dependencies=_dependencies(settings, database, redis),
        metrics=metrics,
    )


def _health_policy(settings: Settings) -> HealthPolicy:
    return HealthPolicy(
        interval_s=settings.health_interval_s,
        timeout_s=settings.health_timeout_s,
        default_model=settings.routing.default_model,
        deep=settings.health_deep,
    )


def _dependencies(settings: Settings, database: Database, redis: Redis) -> dict[str, Any]:
    """What readiness needs besides an engine: the store, and Redis when limits fail closed."""

    async def redis_ping() -> None:
        if not await redis.ping():
            raise ConnectionError("Redis did not answer PING")

    checks: dict[str, Any] = {"store": database.ping}
    if settings.limits_failure_mode == "closed" and settings.auth_enabled:
        checks["redis"] = redis_ping
    return checks


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_attempts, settings.retry_backoff_s, settings.retry_backoff_max_s)


def _timeouts(settings: Settings) -> Timeouts:
    return Timeouts(
        connect_s=settings.connect_timeout_s,
        ttft_s=settings.ttft_timeout_s,
        inter_token_s=settings.inter_token_timeout_s,
        total_s=settings.total_timeout_s,
    )
