"""The composition root: every component of a gateway built once from one Settings object, in one
typed bundle that starts and stops as a whole. `gateway.app` only wires it to routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from opentelemetry.sdk.trace import SpanProcessor
from redis.asyncio import Redis

from adapters.stt import Transcriber
from gateway.admission import Admission, Gate
from gateway.admission.screen import BodyScreen
from gateway.auth import AdminGuard, Authenticator, InvalidationBus, KeyAdmin, KeyCache
from gateway.auth.failures import AuthFailures
from gateway.clients import engine_client, media_fetch_client, redis_clients
from gateway.http.drain import Drain
from gateway.limits import PriceBook, RateLimiter, TokenEstimator
from gateway.limits.accounting import Accountant
from gateway.limits.limiter import ScopeKind
from gateway.limits.rejection_budget import RejectionBudget
from gateway.limits.strikes import Strikes
from gateway.media.service import MediaService
from gateway.observability import GatewayMetrics, HealthMonitor, HealthPolicy, Profiler, Tracing
from gateway.observability.logs import apply_log_settings
from gateway.realtime.session import RealtimeLimits
from gateway.replica_status import replica_status
from gateway.routes.models import LocalModel
from gateway.services.inference import InferenceService
from gateway.services.pooling import PoolingService
from gateway.services.speech import SpeechService
from gateway.services.transcription import TranscriptionService
from gateway.settings.policy import LivePolicy
from gateway.settings.reload import ConfigReloader, LiveConfig
from gateway.settings.schema import RELOADABLE, Settings
from gateway.store import Database, Store, UsageLedger
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher, RetryPolicy
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from gateway.upstreams.retry import RetryBudget
from gateway.upstreams.timeouts import Timeouts
from gateway.worker_pools import media_service, speech_service, speech_transcriber

_log = logging.getLogger("tantra.gateway")


@dataclass(eq=False)
class SharedState:
    """What every replica shares: the SQL store with its ledger, Redis, and the key cache kept
    current over Redis."""

    database: Database
    store: Store
    ledger: UsageLedger
    redis: Redis
    subscriber: Redis
    key_cache: KeyCache
    invalidations: InvalidationBus


@dataclass(eq=False)
class Access:
    """Who may call, and what they may use: admission for the API, the guard for the admin API."""

    limiter: RateLimiter
    accountant: Accountant
    admission: Admission
    admin_guard: AdminGuard
    key_admin: KeyAdmin


@dataclass(eq=False)
class Services:
    """One service per endpoint family, and the media and speech workers they share."""

    media_client: httpx.AsyncClient
    transcriber: Transcriber | None
    media: MediaService | None
    inference: InferenceService
    pooling: PoolingService
    speech: SpeechService | None
    transcription: TranscriptionService

    @property
    def local_models(self) -> list[LocalModel]:
        """The models the gateway serves itself, listed after the engines'."""
        return [self.transcription, *([self.speech] if self.speech else [])]


@dataclass(eq=False)
class Components:
    """Everything a running gateway is made of; built by `build`, started and stopped together."""

    settings: Settings
    live: LiveConfig[Settings]
    policy: LivePolicy
    metrics: GatewayMetrics
    tracing: Tracing
    client: httpx.AsyncClient
    owns_client: bool
    pool: UpstreamPool
    catalog: ModelCatalog
    drain: Drain
    shared: SharedState
    access: Access
    services: Services
    health: HealthMonitor
    reloader: ConfigReloader[Settings]
    profiler: Profiler | None

    async def start(self) -> None:
        """Connect and start the background tasks (ledger writer, invalidation listener, health
        checks, breaker probes, config watcher); nothing connects before this."""
        if self.settings.database_auto_migrate:
            await self.shared.database.migrate()
        self.shared.ledger.start()
        if self.settings.auth_enabled:
            self.shared.invalidations.start()
        self.health.start()
        self.pool.start()
        self.reloader.start()

    async def stop(self) -> None:
        await self.pool.close()
        await self.reloader.close()
        await self.health.close()
        await self.shared.invalidations.close()
        await self.access.limiter.close()
        await self.access.accountant.drain()
        await self.shared.ledger.close()
        await self.shared.redis.aclose()
        await self.shared.subscriber.aclose()
        await self.shared.database.close()
        if self.owns_client:
            await self.client.aclose()
        await self.services.media_client.aclose()
        if self.access.admission.screen is not None:
            await self.access.admission.screen.close()
        if self.services.media is not None:
            await self.services.media.close()
        if self.services.transcriber is not None:
            await self.services.transcriber.close()
        self.tracing.shutdown()

    def apply(self, old: Settings, new: Settings) -> None:
        """A live reload: what the new settings change in running components."""
        apply_log_settings(new.log_format, new.log_level, new.log_prompts)
        self.policy.update(new.policy())
        self.pool.reconfigure(new.upstream_urls(), new.upstreams, new.models)

    def realtime_limits(self) -> RealtimeLimits:
        current = self.live.current
        return RealtimeLimits(
            max_audio_buffer_s=current.realtime_max_audio_buffer_s,
            max_items=current.realtime_max_items,
            transcription_model=current.realtime_transcription_model,
            speech_model=current.realtime_speech_model,
            max_sessions=current.realtime_max_sessions,
            max_sessions_per_key=current.realtime_max_sessions_per_key,
            idle_timeout_s=current.realtime_idle_timeout_s,
        )

    async def status(self) -> dict[str, Any]:
        """The shared state's health, for the admin API."""
        return await replica_status(
            self.shared.redis, self.shared.ledger, self.shared.key_cache, self.access.limiter
        )


def build(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient | None = None,
    span_processor: SpanProcessor | None = None,
) -> Components:
    """Every component, from `settings`. A caller-supplied `http_client` is used as is and not
    closed; `span_processor` receives the spans (tests hand in an in-memory exporter's)."""
    live = LiveConfig(settings)
    policy = LivePolicy(settings.policy())
    metrics = GatewayMetrics()
    client = http_client or engine_client(settings)
    pool, dispatcher, catalog = _upstreams(settings, live, client, metrics)
    shared = _shared_state(settings, metrics)
    access = _access(settings, shared, policy, metrics)
    components = Components(
        settings=settings,
        live=live,
        policy=policy,
        metrics=metrics,
        tracing=Tracing(
            service_name=settings.tracing_service_name,
            otlp_endpoint=settings.otlp_endpoint,
            processor=span_processor,
        ),
        client=client,
        owns_client=http_client is None,
        pool=pool,
        catalog=catalog,
        drain=Drain(),
        shared=shared,
        access=access,
        services=_services(settings, access, dispatcher, catalog),
        health=_health(settings, live, pool, shared, metrics),
        reloader=ConfigReloader(
            live,
            Settings,
            restart_only=set(Settings.model_fields) - RELOADABLE,
            poll_interval_s=settings.config_poll_s,
            metrics=metrics,
            overrides=settings.init_values(),
        ),
        profiler=Profiler() if settings.profiling_enabled else None,
    )
    live.subscribe(components.apply)
    return components


def _shared_state(settings: Settings, metrics: GatewayMetrics) -> SharedState:
    database = Database(settings.database_url)
    store = Store(database)
    redis, subscriber = redis_clients(settings)
    cache = KeyCache(
        ttl_s=settings.auth_cache_ttl_s,
        degraded_ttl_s=settings.auth_cache_degraded_ttl_s,
        max_negative=settings.auth_negative_cache_entries,
    )
    return SharedState(
        database=database,
        store=store,
        ledger=UsageLedger(
            store,
            flush_interval_s=settings.ledger_flush_interval_s,
            batch_size=settings.ledger_batch_size,
            on_set_aside=metrics.ledger_set_aside.inc,
        ),
        redis=redis,
        subscriber=subscriber,
        key_cache=cache,
        invalidations=InvalidationBus(subscriber, cache),
    )


def _access(settings: Settings, shared: SharedState, policy: LivePolicy, metrics: GatewayMetrics) -> Access:
    limiter = _limiter(settings, shared.redis, shared.store)
    accountant = Accountant(
        limiter,
        shared.ledger,
        TokenEstimator(
            settings.limits_default_completion_tokens,
            completion_cap=settings.limits_max_completion_tokens,
        ),
        PriceBook(settings.model_prices),
    )
    redis = shared.redis
    failures = AuthFailures(
        Strikes(redis, "authfail"), lambda outcome: metrics.auth_failures.labels(outcome).inc()
    )
    authenticator = Authenticator(
        shared.store, shared.key_cache, enabled=settings.auth_enabled, failures=failures
    )
    budget = RejectionBudget(Strikes(redis, "rejected:key"), Strikes(redis, "rejected:addr"))
    return Access(
        limiter=limiter,
        accountant=accountant,
        admission=Admission(
            Gate(authenticator, policy),
            accountant,
            policy,
            budget,
            BodyScreen(settings.screen_workers, timeout_s=settings.screen_timeout_s),
        ),
        admin_guard=AdminGuard(settings.resolved_admin_key()),
        key_admin=KeyAdmin(shared.store, shared.invalidations),
    )


def _services(settings: Settings, access: Access, dispatcher: Dispatcher, catalog: ModelCatalog) -> Services:
    media_client = media_fetch_client(settings)
    transcriber = speech_transcriber(settings)
    media = media_service(settings, media_client, transcriber) if settings.media_enabled else None
    admission = access.admission
    return Services(
        media_client=media_client,
        transcriber=transcriber,
        media=media,
        inference=InferenceService(admission, dispatcher, catalog, access.accountant.estimator, media),
        pooling=PoolingService(admission, dispatcher, catalog),
        speech=speech_service(settings, admission) if settings.tts_enabled else None,
        transcription=TranscriptionService(
            transcriber,
            settings.audio_model_names,
            admission,
            max_upload_bytes=settings.audio_max_upload_bytes,
        ),
    )


def _upstreams(
    settings: Settings, live: LiveConfig[Settings], client: httpx.AsyncClient, metrics: GatewayMetrics
) -> tuple[UpstreamPool, Dispatcher, ModelCatalog]:
    pool = UpstreamPool(
        client,
        settings.upstream_urls(),
        settings.upstreams,
        settings.models,
        PoolPolicy(
            breaker_failures=settings.breaker_failures,
            breaker_open_s=settings.breaker_open_s,
            max_outstanding=settings.upstream_max_outstanding,
        ),
        metrics,
    )
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
    )
    catalog = ModelCatalog(lambda: pool.list_models(settings.connect_timeout_s), settings.models_ttl_s)
    return pool, dispatcher, catalog


def _limiter(settings: Settings, redis: Redis, store: Store) -> RateLimiter:
    async def seed(kind: ScopeKind, scope_id: str, since: datetime) -> tuple[int, int]:
        if kind == "key":
            return await store.usage_since(key_id=scope_id, since=since)
        return await store.usage_since(tenant_id=scope_id, since=since)

    return RateLimiter(
        redis,
        window_s=settings.limits_window_s,
        lease_s=settings.limits_lease_s,
        failure_mode=settings.limits_failure_mode,
        seed=seed,
    )


def _health(
    settings: Settings,
    live: LiveConfig[Settings],
    pool: UpstreamPool,
    shared: SharedState,
    metrics: GatewayMetrics,
) -> HealthMonitor:
    """Its upstreams are the pool's, and follow its reconfigurations; its clocks follow reloads."""
    return HealthMonitor(
        pool,
        lambda: _health_policy(live.current),
        dependencies=_dependencies(settings, shared.database, shared.redis),
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
