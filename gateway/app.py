"""The app factory: the components built from one Settings object (gateway.components), wired to
routes, middleware and the lifespan. Nothing else happens here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from opentelemetry.sdk.trace import SpanProcessor
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.components import Components, build
from gateway.errors import (
    APIError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    StoreUnavailable,
    error_for,
)
from gateway.governance import Governance, governance
from gateway.http.client_address import TrustedProxies
from gateway.http.disconnect import ClientGone
from gateway.http.drain import DrainMiddleware
from gateway.http.edge import EdgeMiddleware
from gateway.http.exact_routes import ExactRoutes
from gateway.http.listeners import ListenerGate, listener_of
from gateway.http.openapi import install_openapi
from gateway.learning_setup import include_learning
from gateway.observability import RequestInstrumentation
from gateway.observability.metrics import GatewayMetrics
from gateway.panel_setup import include_panel
from gateway.pii_setup import pii
from gateway.realtime_setup import include_realtime
from gateway.routes import (
    admin_router,
    anthropic_router,
    inference_endpoints,
    inference_router,
    models_router,
    operations_router,
    pooling_router,
    profile_router,
    speech_router,
    transcription_router,
)
from gateway.routes.batches import batches_router
from gateway.routes.conversations import conversations_router
from gateway.routes.evals_admin import evals_admin_router
from gateway.routes.feedback import feedback_admin_router, feedback_router
from gateway.routes.files import files_router
from gateway.routes.fine_tuning import fine_tuning_router
from gateway.routes.gdpr_admin import gdpr_admin_router
from gateway.routes.memory import memory_router
from gateway.routes.moderation import moderation_admin_router, moderation_router
from gateway.routes.panel_evals import panel_evals_router
from gateway.routes.panel_pii import panel_pii_router
from gateway.routes.panel_retention import panel_retention_router
from gateway.routes.pii import pii_admin_router
from gateway.routes.responses import responses_router
from gateway.routes.retention_admin import retention_admin_router
from gateway.routes.stored_completions import stored_completions_router
from gateway.routes.usage_api import usage_router
from gateway.routes.vector_stores import vector_stores_router
from gateway.services.memory_query import LocalQueryEmbedder
from gateway.services.pii import Redactor
from gateway.settings.schema import Settings
from gateway.voices_setup import include_voices

_log = logging.getLogger("tantra.gateway")


def create_app(
    settings: Settings | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    span_processor: SpanProcessor | None = None,
    metrics: GatewayMetrics | None = None,
) -> FastAPI:
    """Build the gateway. The keywords are as `components.build` takes them.

    Nothing connects here: the database is migrated, and the background tasks start, in the
    app's lifespan. `app.state.components` is the bundle (the server's drain reads it).
    """
    parts = build(
        settings or Settings(), http_client=http_client, span_processor=span_processor, metrics=metrics
    )
    governed = governance(parts)
    redactor = pii(parts)

    @asynccontextmanager
    async def lifespan(running: FastAPI) -> AsyncIterator[None]:
        await parts.start()
        await governed.start()
        try:
            yield
        finally:
            await _close_routes(running)
            await governed.stop()
            await parts.stop()
            if redactor is not None:
                redactor.close()

    app = FastAPI(
        title="Tantra",
        version="0.1.0",
        summary="An OpenAI-compatible API for the SpikingBrain core served by vLLM.",
        lifespan=lifespan,
    )
    app.state.components = parts
    app.state.governance = governed
    _include_routes(app, parts)
    _include_governance(app, parts, governed)
    if parts.settings.admin_ui_enabled:
        include_panel(app, parts, governed, pii=redactor is not None)
    if redactor is not None:
        _include_pii(app, parts, redactor)
    _install_error_handlers(app)
    install_openapi(app, description=_DESCRIPTION)
    _install_middleware(app, parts)
    return app


def _install_middleware(app: FastAPI, parts: Components) -> None:
    """The pure ASGI layers, innermost first (each `add_middleware` wraps the ones before it)."""
    # Innermost: chat and completions answered past the router, inside every layer added after it.
    app.add_middleware(
        ExactRoutes,
        routes=inference_endpoints(parts.services.inference),
        exception_handlers=app.exception_handlers,
    )
    # Next, so it runs inside EdgeMiddleware: the request id is known when it starts.
    app.add_middleware(
        RequestInstrumentation, metrics=parts.metrics, tracing=parts.tracing, routes=app.router.routes
    )
    app.add_middleware(DrainMiddleware, drain=parts.drain)
    # Inside EdgeMiddleware: a route refused on this listener still gets a request id.
    app.add_middleware(
        ListenerGate, operator_port=parts.settings.operator_port, admin=parts.settings.admin_listener
    )
    app.add_middleware(EdgeMiddleware, proxies=TrustedProxies(parts.settings.trusted_proxies))


def _include_pii(app: FastAPI, parts: Components, redactor: Redactor) -> None:
    """/admin/pii, and its panel page when the panel is on (docs/governance.md "PII redaction")."""
    proxies = TrustedProxies(parts.settings.trusted_proxies)
    app.include_router(
        pii_admin_router(parts.access.admin_guard, redactor.policies, parts.shared.store, proxies)
    )
    if parts.settings.admin_ui_enabled:
        app.include_router(
            panel_pii_router(
                parts.access.identities,
                redactor.policies,
                parts.shared.store,
                proxies=proxies,
                cookie_secure=parts.settings.admin_cookie_secure,
            )
        )


async def _close_routes(app: FastAPI) -> None:
    """What routes hold apart from the components: WebRTC's peer connections (before what their
    sessions use) and the custom voices' speaker check."""
    if (calls := getattr(app.state, "webrtc_calls", None)) is not None:
        await calls.close()
    if (voices := getattr(app.state, "custom_voices", None)) is not None:
        await voices.close()


def _include_routes(app: FastAPI, parts: Components) -> None:
    settings, services, access = parts.settings, parts.services, parts.access
    authenticate = parts.access.admission.gate.authenticate

    async def require_admin(request: Request) -> None:
        parts.access.admin_guard.check(request.headers)

    app.include_router(
        operations_router(
            health=parts.health,
            metrics=parts.metrics,
            pool=parts.pool,
            scrape_timeout_s=settings.connect_timeout_s,
            engine_metrics_cache_s=settings.engine_metrics_cache_s,
            detailed=lambda request: listener_of(request.scope, settings.operator_port) != "api",
            draining=lambda: parts.drain.draining,
        )
    )
    if parts.profiler is not None:
        app.include_router(profile_router(parts.profiler, require_admin))
    private = parts.fine_tuning.adapters if parts.fine_tuning is not None else None
    app.include_router(models_router(parts.catalog, authenticate, services.local_models, private))
    app.include_router(inference_router(services.inference))
    app.include_router(anthropic_router(services.messages))
    app.include_router(stored_completions_router(services.stored_completions))
    app.include_router(conversations_router(services.conversations))
    app.include_router(responses_router(services.responses))
    app.include_router(pooling_router(services.pooling))
    app.include_router(transcription_router(services.transcription))
    if services.speech is not None:
        custom = app.state.custom_voices = include_voices(app, parts)
        listed = custom.list_voices if custom is not None else None
        app.include_router(speech_router(services.speech, authenticate, listed))
    _include_moderation(app, parts)
    _include_stored(app, parts)
    if settings.realtime_enabled:
        app.state.webrtc_calls = include_realtime(app, parts)
    app.include_router(
        admin_router(
            access.admin_guard,
            access.key_admin,
            parts.shared.store,
            parts.shared.ledger,
            parts.status,
            TrustedProxies(settings.trusted_proxies),
        )
    )


def _include_stored(app: FastAPI, parts: Components) -> None:
    """The APIs over stored objects that are each turned off without their store: files, fine-tuning,
    batches, feedback, memory."""
    if parts.storage is not None:
        app.include_router(files_router(parts.storage.files, parts.storage.uploads))
    if parts.fine_tuning is not None:
        app.include_router(fine_tuning_router(parts.fine_tuning.service))
    if parts.batches is not None:
        app.include_router(batches_router(parts.batches.service))
        # A batch's lines are requests of this app, made in process (gateway/services/batch_work.py).
        parts.batches.work.bind(app)
    if parts.feedback is not None:
        app.include_router(feedback_router(parts.feedback))
        app.include_router(feedback_admin_router(parts.access.admin_guard, parts.feedback))
    if parts.memory is not None:
        app.include_router(memory_router(parts.memory))
        # Its embeddings and extractions are requests of this app, made in process as the caller;
        # a search's query, with the gateway's own static model, is computed directly.
        parts.memory.core.bind(app)
        local, model = parts.services.pooling.local, parts.settings.memory_embedding_model
        if local.knows(model):
            parts.memory.core.direct_queries = LocalQueryEmbedder(local, parts.access.accountant, model)
    if parts.vector_stores is not None:
        app.include_router(vector_stores_router(parts.vector_stores))
        # Its tokenizing and embeddings are requests of this app, made in process as the caller.
        parts.vector_stores.core.bind(app)


def _include_governance(app: FastAPI, parts: Components, governed: Governance) -> None:
    """The tenants' usage and costs API, and /admin/retention (docs/governance.md)."""
    app.include_router(usage_router(governed.usage))
    proxies = TrustedProxies(parts.settings.trusted_proxies)
    guard = parts.access.admin_guard
    if governed.gdpr is not None:
        store, identities = parts.shared.store, parts.access.identities
        app.include_router(gdpr_admin_router(guard, governed.gdpr, store, identities, proxies))
    if governed.evals is not None:
        # Its runs are requests of this app, made in process as the set's key.
        governed.evals.bind(app)
        app.include_router(evals_admin_router(guard, governed.evals, parts.shared.store, proxies))
        if parts.settings.admin_ui_enabled:
            app.include_router(
                panel_evals_router(
                    parts.access.identities,
                    governed.evals,
                    proxies=proxies,
                    cookie_secure=parts.settings.admin_cookie_secure,
                )
            )
    if governed.learning is not None:
        include_learning(app, parts, governed.learning)
    if governed.retention is not None:
        app.include_router(retention_admin_router(guard, governed.retention, parts.shared.store, proxies))
        if parts.settings.admin_ui_enabled:
            identities, cookies = parts.access.identities, parts.settings.admin_cookie_secure
            panel = panel_retention_router(
                identities, governed.retention, parts.shared.store, proxies=proxies, cookie_secure=cookies
            )
            app.include_router(panel)


def _include_moderation(app: FastAPI, parts: Components) -> None:
    """/v1/moderations and /admin/moderation (docs/moderation.md), unless moderation is off."""
    moderation = parts.services.moderation
    if moderation is None:
        return
    app.include_router(moderation_router(moderation.service))
    proxies = TrustedProxies(parts.settings.trusted_proxies)
    policies = moderation.moderation.policies
    admin = moderation_admin_router(parts.access.admin_guard, policies, parts.shared.store, proxies)
    app.include_router(admin)


_DESCRIPTION = """OpenAI's API for the models Tantra serves: the same request fields, the same SSE stream,
and every error in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`.

Authenticate with `Authorization: Bearer <API key>`; the admin API (`/admin`) takes the admin key.
Operators: `/livez` and `/readyz` here; `/metrics`, `/metrics/engines`, `/health/upstreams` and the
detailed `/readyz` on the operator port (`TANTRA_OPERATOR_PORT`, see docs/operations.md)."""


def _install_error_handlers(app: FastAPI) -> None:
    # Each error in the envelope of the API its path belongs to (Anthropic's on /v1/messages).
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_for(request.url.path, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        if exc.status_code == 404:
            return error_for(path, NotFound(f"Invalid URL ({request.method} {path})"))
        if exc.status_code == 405:
            return error_for(path, MethodNotAllowed(f"Method {request.method} is not allowed on {path}."))
        return error_for(path, APIError(str(exc.detail), status=exc.status_code, code=None))

    async def validation_error(request: Request, exc: Exception) -> Response:
        # FastAPI's own 422 for path or query parameters becomes OpenAI's 400.
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(part) for part in first.get("loc", ())[1:]]
        invalid = InvalidRequest(first.get("msg", "Invalid request."), param=".".join(loc) or None)
        return error_for(request.url.path, invalid)

    async def store_error(request: Request, exc: Exception) -> Response:
        # The admin API and the ledger's reports need the database; its outage is a 503, not a 500.
        _log.error("database error: %s", exc)
        unavailable = StoreUnavailable("The database cannot be reached right now; try again shortly.")
        return error_for(request.url.path, unavailable)

    async def client_gone(_: Request, exc: Exception) -> Response:
        # Nobody is left to read the answer; 499 is what nginx logs for the same case.
        return Response(status_code=499)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(ClientGone, client_gone)
    # A database that refuses connections raises the driver's OSError before SQLAlchemy wraps anything.
    for kind in (SQLAlchemyError, ConnectionError, TimeoutError):
        app.add_exception_handler(kind, store_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
