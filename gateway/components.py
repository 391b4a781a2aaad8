"""The composition root: every component of a gateway built once from one Settings object, in one
typed bundle that starts and stops as a whole. `gateway.app` only wires it to routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.sdk.trace import SpanProcessor
from redis.asyncio import Redis

from adapters.stt import Transcriber
from gateway.admission import Admission, Gate
from gateway.admission.screen import BodyScreen
from gateway.auth import AdminGuard, Authenticator, InvalidationBus, KeyAdmin, KeyCache
from gateway.auth.failures import AuthFailures
from gateway.auth.identities import AdminIdentities
from gateway.clients import engine_client, media_fetch_client, rate_limiter, redis_clients
from gateway.file_storage import FileStorage, file_storage
from gateway.http.drain import Drain
from gateway.job_runner import JobRunner, job_runner
from gateway.limits import PriceBook, RateLimiter, TokenEstimator
from gateway.limits.accounting import Accountant
from gateway.limits.rejection_budget import RejectionBudget
from gateway.limits.strikes import Strikes
from gateway.media.service import MediaService
from gateway.model_choice_setup import wire_model_choice
from gateway.moderation_setup import ModerationParts, moderation
from gateway.observability import GatewayMetrics, HealthMonitor, Profiler, Tracing
from gateway.observability.logs import apply_log_settings
from gateway.realtime.session import RealtimeLimits
from gateway.replica_status import replica_status
from gateway.routes.models import LocalModel
from gateway.services.conversations import Conversations
from gateway.services.feedback import FeedbackService
from gateway.services.inference import ChatFeatures, InferenceService
from gateway.services.memory import MemoryService
from gateway.services.messages import MessagesService
from gateway.services.pooling import PoolingService
from gateway.services.responses import ResponsesService
from gateway.services.speech import SpeechService
from gateway.services.spoken import ChatSpeech
from gateway.services.stored_completions import StoredCompletions
from gateway.services.transcription import TranscriptionService
from gateway.services.vector_stores import VectorStoresService
from gateway.settings.policy import LivePolicy
from gateway.settings.reload import ConfigReloader, LiveConfig
from gateway.settings.schema import RELOADABLE, Settings
from gateway.stateful import (
    Batches,
    FineTuning,
    batches,
    conversations,
    feedback,
    fine_tuning,
    memory,
    responses_service,
    stored_completions,
    wire_memory,
)
from gateway.store import Database, Store, UsageLedger
from gateway.store.admin_users import AdminUserStore
from gateway.upstream_setup import health_monitor, upstreams
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher
from gateway.upstreams.pool import UpstreamPool
from gateway.vector_setup import close_memory, vector_stores
from gateway.worker_pools import media_service, speech_service, speech_transcriber, transcription_service

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
    jobs: JobRunner


@dataclass(eq=False)
class Access:
    """Who may call, and what they may use: admission for the API, the guard for the admin API."""

    limiter: RateLimiter
    accountant: Accountant
    admission: Admission
    admin_guard: AdminGuard
    key_admin: KeyAdmin
    # The panel's named admin users and their sessions (issue 21).
    identities: AdminIdentities


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
    messages: MessagesService
    stored_completions: StoredCompletions
    conversations: Conversations
    responses: ResponsesService
    # /v1/moderations and the tenants' moderation policies (None with moderation_enabled off).
    moderation: ModerationParts | None = None

    @property
    def local_models(self) -> list[LocalModel]:
        """The models the gateway serves itself, listed after the engines'."""
        moderation = [self.moderation.service] if self.moderation else []
        choice = [self.inference.chooser] if self.inference.chooser else []  # virtual models (`auto`)
        return [self.transcription, self.pooling.local, *filter(None, [self.speech]), *moderation, *choice]


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
    # The Files and Uploads APIs (None when files_enabled is off).
    storage: FileStorage | None = None
    # The Batch API (None without the Files API or with batches_enabled off).
    batches: Batches | None = None
    # The fine-tuning jobs API and its models (None without the Files API or when turned off).
    fine_tuning: FineTuning | None = None
    # The memory API (None with memory_enabled off).
    memory: MemoryService | None = None
    # /v1/feedback (None with feedback_enabled off).
    feedback: FeedbackService | None = None
    vector_stores: VectorStoresService | None = None  # /v1/vector_stores (None without the Files API)

    async def start(self) -> None:
        """Connect and start the background tasks (ledger writer, invalidation listener, health
        checks, breaker probes, config watcher); nothing connects before this."""
        if self.settings.database_auto_migrate:
            await self.shared.database.migrate()
        self.shared.ledger.start()
        if self.storage is not None:
            await self.storage.start()
        if self.settings.auth_enabled:
            self.shared.invalidations.start()
        self.health.start()
        self.pool.start()
        self.reloader.start()
        if (chooser := self.services.inference.chooser) is not None:  # task centroids, in the background
            chooser.warm_soon(self.settings.virtual_models)
        self.shared.jobs.start()
        owner = self.settings.bootstrap_owner()
        if owner is not None and await self.access.identities.bootstrap_owner(*owner):
            _log.info("created the bootstrap admin owner %r", owner[0])

    async def stop(self) -> None:
        await self.shared.jobs.stop()
        await self.health.close()  # before the pool, which closes the probes' client
        await self.pool.close()
        await self.reloader.close()
        if self.storage is not None:
            await self.storage.close()
        await self.shared.invalidations.close()
        await self.access.limiter.close()
        await self.access.accountant.drain()
        await self.shared.ledger.close()
        await self.services.stored_completions.close()
        await self.services.responses.close()
        await close_memory(self.memory, self.vector_stores, self.services.inference.memory)
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
        await self.services.transcription.close()
        if self.services.moderation is not None:
            self.services.moderation.close()
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
            noise_suppression=current.vad_noise_suppression(),
            noise_strength=current.audio_noise_suppression_strength,
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
    metrics: GatewayMetrics | None = None,
) -> Components:
    """Every component, from `settings` (a given client is not closed; `metrics`: gateway/workers.py)."""
    live = LiveConfig(settings)
    policy = LivePolicy(settings.policy())
    metrics = metrics or GatewayMetrics()
    client = http_client or engine_client(settings)
    pool, dispatcher, catalog = upstreams(settings, live, client, metrics, own_probes=http_client is None)
    drain = Drain()
    shared = _shared_state(settings, metrics, drain)
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
        drain=drain,
        shared=shared,
        access=access,
        services=_services(settings, shared, access, dispatcher, catalog),
        health=health_monitor(settings, live, pool, shared.database, shared.redis, metrics),
        reloader=ConfigReloader(
            live,
            Settings,
            restart_only=set(Settings.model_fields) - RELOADABLE,
            poll_interval_s=settings.config_poll_s,
            metrics=metrics,
            overrides=settings.init_values(),
        ),
        profiler=Profiler() if settings.profiling_enabled else None,
        storage=file_storage(settings, access.admission, shared.database),
    )
    components.batches = batches(settings, components.storage, shared.jobs)
    components.fine_tuning = fine_tuning(settings, components.storage, shared.jobs, pool, access.accountant)
    if components.fine_tuning is not None:
        components.services.inference.use_adapters(components.fine_tuning.adapters)
    components.memory = memory(settings, shared.database, access.admission, components.storage, shared.redis)
    served = components.services
    wire_memory(settings, components.memory, shared.jobs, served.inference, served.responses)
    components.feedback = feedback(settings, shared.database, access.admission, components.storage)
    wire_model_choice(components.services, policy, catalog, dispatcher, access.accountant.prices, live)
    components.vector_stores = vector_stores(
        settings, components.storage, shared.jobs, components.services.responses
    )
    live.subscribe(components.apply)
    return components


def _shared_state(settings: Settings, metrics: GatewayMetrics, drain: Drain) -> SharedState:
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
        jobs=job_runner(settings, database, drain),
    )


def _access(settings: Settings, shared: SharedState, policy: LivePolicy, metrics: GatewayMetrics) -> Access:
    limiter = rate_limiter(settings, shared.redis, shared.store)
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
        identities=AdminIdentities(
            AdminUserStore(shared.database), session_ttl_s=settings.admin_session_ttl_s
        ),
    )


def _services(
    settings: Settings, shared: SharedState, access: Access, dispatcher: Dispatcher, catalog: ModelCatalog
) -> Services:
    media_client = media_fetch_client(settings)
    transcriber = speech_transcriber(settings)
    media = media_service(settings, media_client, transcriber) if settings.media_enabled else None
    admission = access.admission
    kept = stored_completions(settings, shared.database, admission)
    talks = conversations(shared.database, admission)
    speech = speech_service(settings, admission) if settings.tts_enabled else None
    moderated = moderation(settings, shared.database, admission, dispatcher, media_client)
    # Chat's spoken answers (audio output) use the speech endpoint's synthesizer and its pool.
    chat_speech = (
        ChatSpeech(speech.synthesizer, model=speech.model, custom=speech.custom_voice) if speech else None
    )
    return Services(
        media_client=media_client,
        transcriber=transcriber,
        media=media,
        inference=InferenceService(
            admission,
            dispatcher,
            catalog,
            access.accountant.estimator,
            ChatFeatures(media, kept, chat_speech, moderated.chat if moderated is not None else None),
        ),
        speech=speech,
        pooling=PoolingService(admission, dispatcher, catalog, settings.local_embedding_models),
        transcription=transcription_service(settings, transcriber, admission, dispatcher, catalog),
        messages=MessagesService(admission, dispatcher, catalog, access.accountant.estimator),
        stored_completions=kept,
        conversations=talks,
        responses=responses_service(
            settings, shared.database, admission, shared.jobs, dispatcher, catalog, access.accountant, talks
        ),
        moderation=moderated,
    )
