"""The app factory: every component is built here from one Settings object and handed to the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from opentelemetry.sdk.trace import SpanProcessor
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from adapters import (
    MediaLimits,
    UrlFetcher,
    UrlPolicy,
)
from adapters.stt import Transcriber
from adapters.tts import EspeakBackend, PiperBackend, SpeechBackend, Synthesizer
from gateway.auth import AdminGuard, Authenticator, InvalidationBus, KeyAdmin, KeyCache
from gateway.errors import APIError, InvalidRequest, MethodNotAllowed, NotFound, StoreUnavailable
from gateway.http.drain import Drain, DrainMiddleware
from gateway.http.edge import EdgeMiddleware
from gateway.http.openapi import install_openapi
from gateway.limits import PriceBook, RateLimiter, TokenEstimator
from gateway.limits.accounting import Accountant
from gateway.limits.limiter import ScopeKind
from gateway.media.service import MediaService, WorkerSpec, media_executor
from gateway.observability import (
    GatewayMetrics,
    HealthMonitor,
    HealthPolicy,
    Profiler,
    RequestInstrumentation,
    Tracing,
)
from gateway.observability.logs import apply_log_settings
from gateway.realtime.session import RealtimeLimits
from gateway.routes import (
    admin_router,
    inference_router,
    models_router,
    operations_router,
    profile_router,
    realtime_router,
    speech_router,
    transcription_router,
)
from gateway.routes.models import LocalModel
from gateway.services.inference import InferenceService
from gateway.services.speech import SpeechService
from gateway.services.transcription import TranscriptionService
from gateway.settings.reload import ConfigReloader, LiveConfig
from gateway.settings.schema import RELOADABLE, Settings
from gateway.store import Database, Store, UsageLedger
from gateway.upstreams import ModelCatalog
from gateway.upstreams.dispatch import Dispatcher, RetryPolicy
from gateway.upstreams.pool import PoolPolicy, UpstreamPool
from gateway.upstreams.retry import RetryBudget
from gateway.upstreams.timeouts import Timeouts
from gateway.upstreams.transport import EngineTransport

_log = logging.getLogger("tantra.gateway")


def create_app(
    settings: Settings | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    span_processor: SpanProcessor | None = None,
) -> FastAPI:
    """Build the gateway. A caller-supplied `http_client` is used as is and not closed by the app;
    `span_processor` receives the spans (tests hand in an in-memory exporter's).

    Nothing connects here: the database is migrated, and the background tasks (ledger writer,
    invalidation listener, health checks, config watcher) start, in the app's lifespan.
    """
    settings = settings or Settings()
    live = LiveConfig(settings)
    metrics = GatewayMetrics()
    tracing = Tracing(
        service_name=settings.tracing_service_name,
        otlp_endpoint=settings.otlp_endpoint,
        processor=span_processor,
    )
    client = http_client or engine_client(settings)
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
    drain = Drain()

    database = Database(settings.database_url)
    store = Store(database)
    ledger = UsageLedger(
        store, flush_interval_s=settings.ledger_flush_interval_s, batch_size=settings.ledger_batch_size
    )
    redis, subscriber = redis_clients(settings)
    cache = KeyCache(ttl_s=settings.auth_cache_ttl_s, degraded_ttl_s=settings.auth_cache_degraded_ttl_s)
    bus = InvalidationBus(subscriber, cache)
    authenticator = Authenticator(store, cache, enabled=settings.auth_enabled)

    async def seed(kind: ScopeKind, scope_id: str, since: datetime) -> tuple[int, int]:
        if kind == "key":
            return await store.usage_since(key_id=scope_id, since=since)
        return await store.usage_since(tenant_id=scope_id, since=since)

    limiter = RateLimiter(
        redis,
        window_s=settings.limits_window_s,
        lease_s=settings.limits_lease_s,
        failure_mode=settings.limits_failure_mode,
        seed=seed,
    )
    accountant = Accountant(
        limiter,
        ledger,
        TokenEstimator(settings.limits_default_completion_tokens),
        PriceBook(settings.model_prices),
    )
    media_client = media_fetch_client(settings)
    transcriber = speech_transcriber(settings)
    media = media_service(settings, media_client, transcriber) if settings.media_enabled else None
    inference = InferenceService(
        dispatcher,
        catalog,
        settings.max_body_bytes,
        authenticator=authenticator,
        accountant=accountant,
        live=live,
        media=media,
        default_accepts=settings.media_default_accepts,
    )
    speech = speech_service(settings, inference, accountant, live) if settings.tts_enabled else None
    transcription = TranscriptionService(
        transcriber,
        settings.audio_model_names,
        inference.gate,
        accountant,
        max_upload_bytes=settings.audio_max_upload_bytes,
        live=live,
    )
    health = HealthMonitor(  # its upstreams are the pool's, and follow its reconfigurations
        pool,
        lambda: _health_policy(live.current),
        dependencies=_dependencies(settings, database, redis),
        metrics=metrics,
    )
    reloader = ConfigReloader(
        live,
        Settings,
        restart_only=set(Settings.model_fields) - RELOADABLE,
        poll_interval_s=settings.config_poll_s,
        metrics=metrics,
        overrides=settings.init_values(),
    )

    def on_reload(old: Settings, new: Settings) -> None:
        apply_log_settings(new.log_format, new.log_level, new.log_prompts)
        pool.reconfigure(new.upstream_urls(), new.upstreams, new.models)

    live.subscribe(on_reload)

    async def status() -> dict[str, Any]:
        try:
            redis_ok = bool(await redis.ping())
        except Exception:
            redis_ok = False
        return {
            "redis": {"reachable": redis_ok, "invalidations_live": cache.live},
            "limits": {"failure_mode": limiter.failure_mode, **asdict(limiter.stats)},
            "ledger": {
                "pending": ledger.pending,
                "written": ledger.written,
                "dropped": ledger.dropped,
                "failures": ledger.failures,
            },
            "auth_cache": {"entries": len(cache), "hits": cache.hits, "misses": cache.misses},
        }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.database_auto_migrate:
            await database.migrate()
        ledger.start()
        if settings.auth_enabled:
            bus.start()
        health.start()
        pool.start()
        reloader.start()
        try:
            yield
        finally:
            await pool.close()
            await reloader.close()
            await health.close()
            await bus.close()
            await accountant.drain()
            await ledger.close()
            await redis.aclose()
            await subscriber.aclose()
            await database.close()
            if http_client is None:
                await client.aclose()
            await media_client.aclose()
            if media is not None:
                await media.close()
            if transcriber is not None:
                await transcriber.close()
            tracing.shutdown()

    app = FastAPI(
        title="Tantra",
        version="0.1.0",
        summary="An OpenAI-compatible API for the SpikingBrain core served by vLLM.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.live_config = live
    app.state.metrics = metrics
    app.state.health = health
    app.state.reloader = reloader
    app.state.accountant = accountant
    app.state.invalidations = bus
    app.state.pool = pool
    app.state.drain = drain
    # The realtime endpoint speaks its answers with the same synthesizer (None when TTS is off).
    app.state.synthesizer = speech.synthesizer if speech is not None else None
    guard = AdminGuard(settings.resolved_admin_key())

    async def require_admin(request: Request) -> None:
        guard.check(request.headers)

    app.include_router(
        operations_router(
            health=health,
            metrics=metrics,
            pool=pool,
            scrape_timeout_s=settings.connect_timeout_s,
            draining=lambda: drain.draining,
        )
    )
    if settings.profiling_enabled:
        app.include_router(profile_router(Profiler(), require_admin))
    local_models: list[LocalModel] = [transcription, *([speech] if speech else [])]
    app.include_router(models_router(catalog, inference.authenticate, local_models))
    app.include_router(inference_router(inference))
    app.include_router(transcription_router(transcription))
    if speech is not None:
        app.include_router(speech_router(speech))
    if settings.realtime_enabled:
        app.include_router(
            realtime_router(catalog, inference.authenticate_headers, lambda: _realtime_limits(live.current))
        )
    app.include_router(admin_router(guard, KeyAdmin(store, bus), store, ledger, status))
    _install_error_handlers(app)
    install_openapi(app, description=_DESCRIPTION)
    # Added first, so it runs inside EdgeMiddleware: the request id is known when it starts.
    app.add_middleware(RequestInstrumentation, metrics=metrics, tracing=tracing, routes=app.router.routes)
    app.add_middleware(DrainMiddleware, drain=drain)
    app.add_middleware(EdgeMiddleware)
    return app


def _realtime_limits(settings: Settings) -> RealtimeLimits:
    return RealtimeLimits(
        max_audio_buffer_s=settings.realtime_max_audio_buffer_s,
        max_items=settings.realtime_max_items,
        transcription_model=settings.realtime_transcription_model,
        speech_model=settings.realtime_speech_model,
    )


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(settings.retry_attempts, settings.retry_backoff_s, settings.retry_backoff_max_s)


def _health_policy(settings: Settings) -> HealthPolicy:
    return HealthPolicy(
        interval_s=settings.health_interval_s,
        timeout_s=settings.health_timeout_s,
        default_model=settings.routing.default_model,
        deep=settings.health_deep,
    )


def _timeouts(settings: Settings) -> Timeouts:
    return Timeouts(
        connect_s=settings.connect_timeout_s,
        ttft_s=settings.ttft_timeout_s,
        inter_token_s=settings.inter_token_timeout_s,
        total_s=settings.total_timeout_s,
    )


_DESCRIPTION = """OpenAI's API for the models Tantra serves: the same request fields, the same SSE stream,
and every error in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`.

Authenticate with `Authorization: Bearer <API key>`; the admin API (`/admin`) takes the admin key.
Operators: `/livez`, `/readyz`, `/metrics` (see docs/operations.md)."""


def _dependencies(settings: Settings, database: Database, redis: Redis) -> dict[str, Any]:
    """What readiness needs besides an engine: the store, and Redis when limits fail closed."""

    async def redis_ping() -> None:
        if not await redis.ping():
            raise ConnectionError("Redis did not answer PING")

    checks: dict[str, Any] = {"store": database.ping}
    if settings.limits_failure_mode == "closed" and settings.auth_enabled:
        checks["redis"] = redis_ping
    return checks


def engine_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for all engine traffic; its read timeout bounds the wait for each next chunk."""
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s)
    if settings.engine_transport == "aiohttp":
        # Far cheaper per request at high concurrency (docs/performance.md); opt-in until its connect
        # timeouts under heavy CPU load are understood.
        return httpx.AsyncClient(timeout=timeout, transport=EngineTransport(limits=limits), trust_env=False)
    return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)


IN_PROCESS_REDIS = "memory://"


def redis_clients(settings: Settings) -> tuple[Redis, Redis]:
    """The request path's client and the key-invalidation subscriber's.

    `TANTRA_REDIS_URL=memory://` keeps the limits in this process, for a single replica without a
    Redis server: fakeredis runs the limiter's own Lua scripts (through lupa), so the limits behave
    exactly as with Redis, only not shared with other replicas.
    """
    if settings.redis_url == IN_PROCESS_REDIS:
        from fakeredis import FakeAsyncRedis, FakeServer

        server = FakeServer()
        return FakeAsyncRedis(server=server), FakeAsyncRedis(server=server)
    # The subscriber waits on its connection for as long as nothing is published: no read timeout.
    return redis_client(settings), redis_client(settings, read_timeout_s=None)


def speech_transcriber(settings: Settings) -> Transcriber | None:
    """whisper.cpp in worker processes, started on first use (None without a configured model)."""
    if settings.audio_whisper_model is None:
        return None
    return Transcriber(
        settings.audio_whisper_model,
        workers=settings.audio_workers,
        threads=settings.audio_threads,
        nice=settings.audio_nice,
        queue_timeout_s=settings.audio_queue_timeout_s,
        max_seconds=settings.audio_max_seconds,
    )


def media_service(
    settings: Settings, client: httpx.AsyncClient, transcriber: Transcriber | None = None
) -> MediaService:
    """The adapters with this gateway's limits, OCR, image policy, URL allow-list and worker pool."""
    limits = MediaLimits(
        max_parts=settings.media_max_parts,
        max_images=settings.media_max_images,
        max_image_pixels=settings.media_max_image_pixels,
        max_total_pixels=settings.media_max_total_pixels,
        image_pixel_budget=settings.media_image_pixel_budget,
        max_part_bytes=settings.media_max_part_bytes,
        max_total_bytes=settings.media_max_total_bytes,
        max_pages=settings.media_max_pages,
        max_video_seconds=settings.media_max_video_seconds,
        video_fps=settings.media_video_fps,
        max_video_frames=settings.media_max_video_frames,
    )
    spec = WorkerSpec(
        limits,
        ocr_enabled=settings.media_ocr_enabled,
        ocr_lang=settings.media_ocr_lang,
        ocr_timeout_s=settings.media_ocr_timeout_s,
        image_formats=tuple(settings.media_image_formats),
        image_filter=settings.media_image_filter,
        log_format=settings.log_format,
        log_level=settings.log_level,
        log_prompts=settings.log_prompts,
    )
    fetcher = UrlFetcher(
        UrlPolicy(settings.media_url_allowlist),
        client,
        timeout_s=settings.media_fetch_timeout_s,
        max_bytes=settings.media_max_part_bytes,
    )
    return MediaService(
        spec.preprocessor(),
        fetcher,
        lambda: media_executor(spec, settings.media_executor, settings.media_workers),
        concurrency=settings.media_workers,
        queue_timeout_s=settings.media_queue_timeout_s,
        transcriber=transcriber,
    )


def speech_service(
    settings: Settings, inference: InferenceService, accountant: Accountant, live: LiveConfig[Settings]
) -> SpeechService:
    """/v1/audio/speech: Piper voices (when any are configured) before eSpeak NG's."""
    backends: list[SpeechBackend] = []
    if settings.tts_piper_voices:
        backends.append(PiperBackend(settings.tts_piper_voices))
    backends.append(EspeakBackend(settings.tts_espeak_binary, timeout_s=settings.tts_timeout_s))
    return SpeechService(
        Synthesizer(backends, concurrency=settings.tts_concurrency),
        inference.gate,
        accountant,
        model=settings.tts_model,
        aliases=settings.tts_model_aliases,
        max_input_chars=settings.tts_max_input_chars,
        max_body_bytes=settings.max_body_bytes,
        live=live,
    )


def media_fetch_client(settings: Settings) -> httpx.AsyncClient:
    """Media URLs are fetched with their own client: the engine pool's timeouts and limits are not theirs."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.media_fetch_timeout_s),
        limits=httpx.Limits(max_connections=32),
        trust_env=False,
    )


def redis_client(settings: Settings, *, read_timeout_s: float | None = -1.0) -> Redis:
    """Short timeouts and no retries: on the request path a slow Redis falls to the failure policy
    at once instead of stalling requests; the limiter itself decides when to try again. Past
    `max_connections` busy connections a command waits (up to the timeout) for one to come free."""
    timeout = settings.redis_timeout_s if read_timeout_s == -1.0 else read_timeout_s
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=timeout,
        # Opening connections under a burst takes longer than a command; a dead Redis refuses at once.
        socket_connect_timeout=max(1.0, settings.redis_timeout_s),
    )
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return NotFound(f"Invalid URL ({request.method} {request.url.path})").response()
        if exc.status_code == 405:
            return MethodNotAllowed(
                f"Method {request.method} is not allowed on {request.url.path}."
            ).response()
        return APIError(str(exc.detail), status=exc.status_code, code=None).response()

    async def validation_error(_: Request, exc: Exception) -> Response:
        # FastAPI's own 422 for path or query parameters becomes OpenAI's 400.
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(part) for part in first.get("loc", ())[1:]]
        return InvalidRequest(first.get("msg", "Invalid request."), param=".".join(loc) or None).response()

    async def store_error(_: Request, exc: Exception) -> Response:
        # The admin API and the ledger's reports need the database; its outage is a 503, not a 500.
        _log.error("database error: %s", exc)
        return StoreUnavailable("The database cannot be reached right now; try again shortly.").response()

    app.add_exception_handler(APIError, api_error)
    # A database that refuses connections raises the driver's OSError before SQLAlchemy wraps anything.
    for kind in (SQLAlchemyError, ConnectionError, TimeoutError):
        app.add_exception_handler(kind, store_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
