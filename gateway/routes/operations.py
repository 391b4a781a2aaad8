"""The operator's routes: /livez (and /healthz), /readyz, /metrics, /metrics/engines, /debug/profile.

Thin: each reads what the observability pieces it is handed already know."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from gateway.errors import APIError
from gateway.observability.federation import federate
from gateway.observability.health import HealthMonitor
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.profiling import ProfileFormat, Profiler, ProfilerUnavailable
from gateway.protocol import ErrorResponse

Guard = Callable[[Request], Awaitable[None]]


class NotReady(APIError):
    status = 503
    type = "server_error"
    code = "not_ready"


class Liveness(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(description="`ready`.", examples=["ready"])
    upstreams: dict[str, dict[str, Any]] = Field(
        description="Each upstream's last deep check: healthy, model, latency_ms, reason, checked_s_ago."
    )
    dependencies: dict[str, dict[str, Any]] = Field(description="The store (and Redis when it gates).")
    problems: list[str] = Field(description="Empty: a gateway that is not ready answers 503.")


_TEXT = {"text/plain": {"schema": {"type": "string"}}}


# Every collaborator by keyword: the router is the operations surface's one composition point.
def operations_router(  # noqa: PLR0913
    *,
    health: HealthMonitor,
    metrics: GatewayMetrics,
    engine_client: httpx.AsyncClient,
    upstreams: Callable[[], Mapping[str, str]],
    scrape_timeout_s: float,
    profiler: Profiler | None,
    admin_guard: Guard,
    upstream_states: Callable[[], dict[str, dict[str, Any]]] = dict,
    draining: Callable[[], bool] = lambda: False,
) -> APIRouter:
    router = APIRouter(tags=["operations"])
    _add_probes(router, health, upstream_states, draining)
    _add_metrics(router, metrics, engine_client, upstreams, scrape_timeout_s)
    if profiler is not None:
        _add_profile(router, profiler, admin_guard)
    return router


def _add_probes(
    router: APIRouter,
    health: HealthMonitor,
    upstream_states: Callable[[], dict[str, dict[str, Any]]],
    draining: Callable[[], bool],
) -> None:
    """What Kubernetes and an operator ask: is the process alive, is it ready, how are the upstreams."""

    @router.get("/livez", summary="Liveness: the gateway process answers", response_model=Liveness)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/healthz", summary="Liveness (alias of /livez)", response_model=Liveness)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: a healthy upstream for the default model, and the store reachable",
        description="Answers from the cache of the background deep checks (each upstream generates "
        "one token every interval), so probes are cheap. Not ready: 503 in OpenAI's error envelope, "
        "the message naming every problem.",
        response_model=Readiness,
        responses={503: {"model": ErrorResponse, "description": "Not ready; the message says why."}},
    )
    async def readyz() -> Response:
        if draining():
            raise NotReady("Not ready: the gateway is shutting down.")
        await health.settled()
        report = health.report()
        if not report.ready:
            raise NotReady(f"Not ready: {report.summary()}.")
        return Response(orjson.dumps(report.body()), media_type="application/json")

    @router.get(
        "/health/upstreams",
        summary="Each upstream's circuit breaker and load, as routing sees them now",
        description="state is `closed` (serving), `open` (no traffic; probed in the background) or "
        "`half_open` (one trial request); outstanding is the requests this gateway has in flight there.",
    )
    async def upstream_health() -> dict[str, Any]:
        return {"upstreams": upstream_states(), "draining": draining()}


def _add_metrics(
    router: APIRouter,
    metrics: GatewayMetrics,
    engine_client: httpx.AsyncClient,
    upstreams: Callable[[], Mapping[str, str]],
    scrape_timeout_s: float,
) -> None:
    """What Prometheus scrapes: this replica's metrics, and the engines' own (federated)."""

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
        body = await federate(engine_client, upstreams(), scrape_timeout_s)
        return Response(body, media_type=metrics.content_type)


def _add_profile(router: APIRouter, profiler: Profiler, admin_guard: Guard) -> None:
    """/debug/profile, only when profiling is enabled: py-spy on the running gateway (admin key)."""

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
