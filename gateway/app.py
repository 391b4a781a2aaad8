"""The app factory: every component is built here from one Settings object and handed to the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.errors import APIError, InvalidRequest, MethodNotAllowed, NotFound
from gateway.middleware import EdgeMiddleware
from gateway.routes import health_router, inference_router, models_router
from gateway.serving import InferenceService
from gateway.upstreams import EngineUpstream, ModelCatalog


def create_app(settings: Settings | None = None, *, http_client: httpx.AsyncClient | None = None) -> FastAPI:
    """Build the gateway. A caller-supplied `http_client` is used as is and not closed by the app."""
    settings = settings or Settings()
    client = http_client or engine_client(settings)
    engine = EngineUpstream(str(settings.engine_url), client)
    catalog = ModelCatalog(engine, settings.models_ttl_s)
    inference = InferenceService(engine, catalog, settings.max_body_bytes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if http_client is None:
                await client.aclose()

    app = FastAPI(
        title="Tantra",
        version="0.1.0",
        summary="An OpenAI-compatible API for the SpikingBrain core served by vLLM.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(health_router(engine, timeout_s=settings.connect_timeout_s))
    app.include_router(models_router(catalog))
    app.include_router(inference_router(inference))
    _install_error_handlers(app)
    app.add_middleware(EdgeMiddleware)
    return app


def engine_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for all engine traffic; its read timeout bounds the wait for each next chunk."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
            keepalive_expiry=30.0,
        ),
        trust_env=False,
    )


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

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
