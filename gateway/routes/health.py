"""GET /healthz (the process is alive) and GET /readyz (the engine answers)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.errors import EngineUnavailable
from gateway.upstreams import EngineUpstream


def health_router(engine: EngineUpstream, timeout_s: float) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the gateway process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: the engine answers its health check")
    async def readyz() -> dict[str, str]:
        if not await engine.is_healthy(timeout_s):
            raise EngineUnavailable("The engine does not answer its health check.")
        return {"status": "ready"}

    return router
