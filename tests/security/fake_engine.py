"""A stand-in vLLM engine for the security tests: one model, and a /metrics that counts its scrapes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MODEL = "fake-model"


class FakeEngine:
    def __init__(self) -> None:
        self.scrapes = 0
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/metrics", self._metrics),
                Route("/health", self._health),
            ]
        )

    async def _models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]})

    async def _metrics(self, _: Request) -> Response:
        self.scrapes += 1
        return PlainTextResponse("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n")

    async def _health(self, _: Request) -> Response:
        return PlainTextResponse("")
