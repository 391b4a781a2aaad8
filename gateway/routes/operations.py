"""The operator's routes: /livez (and /healthz), /readyz, /metrics, /metrics/engines, /debug/profile.

Thin: each reads what the observability pieces it is handed already know."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from gateway.errors import APIError
from gateway.observability.federation import FederationCache
from gateway.observability.health import HealthMonitor
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.profiling import ProfileFormat, Profiler, ProfilerUnavailable
from gateway.protocol import ErrorResponse
from gateway.upstreams.pool import UpstreamPool

Guard = Callable[[Request], Awaitable[None]]


class NotReady(APIError):
    status = 503
    type = "server_error"
    code = "not_ready"


class Liveness(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(description="`ready`.", examples=["ready"])
    # The rest only on the operator port (the API port tells the status alone).
    engines_ready: bool = Field(
        True, description="A healthy upstream serves the default model (required with `engines=1`)."
    )
    upstreams: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Each upstream's last deep check: healthy, model, latency_ms, reason, checked_s_ago.",
    )
    dependencies: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The store (and Redis when it gates)."
    )
    problems: list[str] = Field(
        default_factory=list, description="The gateway's own; empty: a gateway that is not ready answers 503."
    )
    engine_problems: list[str] = Field(
        default_factory=list, description="Why `engines_ready` is false (a 503 only with `engines=1`)."
    )


_TEXT = {"text/plain": {"schema": {"type": "string"}}}


# Every collaborator by keyword: the router is the operations surface's one composition point.
def operations_router(
    *,
    health: HealthMonitor,
    metrics: GatewayMetrics,
    pool: UpstreamPool,
    scrape_timeout_s: float,
    engine_metrics_cache_s: float = 0.0,
    detailed: Callable[[Request], bool] = lambda _: True,
    draining: Callable[[], bool] = lambda: False,
) -> APIRouter:
    """The probes and metrics; `pool` is the live registry of upstreams (their breaker states, and
    whom /metrics/engines scrapes). `detailed` says whether a request may see /readyz's details (it
    arrived on the operator listener); the listener gate keeps the rest off the public port."""
    router = APIRouter(tags=["operations"])
    _add_probes(router, health, pool, draining, detailed)
    engines = FederationCache(engine_metrics_cache_s)

    @router.get(
        "/metrics",
        summary="Prometheus metrics of this gateway replica",
        response_class=Response,
        responses={200: {"content": _TEXT, "description": "Prometheus text exposition format."}},
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @router.get(
        "/metrics/engines",
        summary="The engines' own vLLM metrics, each sample labelled with its upstream",
        response_class=Response,
        responses={200: {"content": _TEXT, "description": "Prometheus text exposition format."}},
    )
    async def engine_metrics() -> Response:
        body = await engines.get(pool.upstreams, scrape_timeout_s)
        return Response(body, media_type=metrics.content_type)

    return router


def _add_probes(
    router: APIRouter,
    health: HealthMonitor,
    pool: UpstreamPool,
    draining: Callable[[], bool],
    detailed: Callable[[Request], bool],
) -> None:
    @router.get("/livez", summary="Liveness: the gateway process answers", response_model=Liveness)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/healthz", summary="Liveness (alias of /livez)", response_model=Liveness)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness of the gateway itself: its store (and Redis when limits fail closed) reachable",
        description="The gateway's own readiness, not the engines': with every engine down it stays "
        "ready and answers inference with OpenAI's 503 envelope and Retry-After. `engines=1` also "
        "requires a healthy upstream for the default model (the engines' own signal, as is the "
        "`tantra_engines_ready` gauge). Answers from the cache of the background checks (each "
        "upstream generates one token every interval), so probes are cheap. Not ready: 503 in "
        "OpenAI's error envelope. "
        "On the operator port the body and the message name every problem; on the API port only the "
        "status is told (upstream names, URLs and dependency errors are the operator's).",
        response_model=Readiness,
        responses={503: {"model": ErrorResponse, "description": "Not ready; the message says why."}},
    )
    async def readyz(
        request: Request,
        engines: Annotated[
            bool, Query(description="Also require a healthy upstream serving the default model.")
        ] = False,
    ) -> Response:
        if draining():
            raise NotReady("Not ready: the gateway is shutting down.")
        await health.settled()
        report = health.report()
        full = detailed(request)
        if not report.ready or (engines and not report.engines_ready):
            raise NotReady(f"Not ready: {report.summary(engines)}." if full else "Not ready.")
        body = report.body() if full else {"status": "ready"}
        return Response(orjson.dumps(body), media_type="application/json")

    @router.get(
        "/health/upstreams",
        summary="Each upstream's circuit breaker and load, as routing sees them now",
        description="state is `closed` (serving), `open` (no traffic; probed in the background) or "
        "`half_open` (one trial request); outstanding is the requests this gateway has in flight there.",
    )
    async def upstream_health() -> dict[str, Any]:
        return {"upstreams": pool.snapshot(), "draining": draining()}


def profile_router(profiler: Profiler, admin_guard: Guard) -> APIRouter:
    """/debug/profile, behind the admin key (only when profiling is enabled)."""
    router = APIRouter(tags=["operations"])

    @router.get(
        "/debug/profile",
        summary="Profile the running gateway with py-spy (admin key; TANTRA_PROFILING_ENABLED)",
        response_class=Response,
        responses={
            200: {
                "description": "The profile: speedscope JSON, flamegraph SVG or raw folded stacks.",
                "content": {
                    "application/json": {},
                    "image/svg+xml": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                },
            },
            401: {"model": ErrorResponse, "description": "Missing or wrong admin key."},
            503: {"model": ErrorResponse, "description": "py-spy is missing, busy or failed."},
        },
    )
    async def profile(
        request: Request,
        seconds: Annotated[float, Query(ge=1, le=60, description="How long to sample.")] = 5,
        format: Annotated[ProfileFormat, Query(description="Output format.")] = "speedscope",
    ) -> Response:
        await admin_guard(request)
        try:
            data = await profiler.record(seconds, format)
        except ProfilerUnavailable as exc:
            raise APIError(str(exc), status=503, code="profiler_unavailable") from None
        return Response(data, media_type=profiler.media_type(format))

    return router
