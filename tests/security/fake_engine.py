"""A stand-in vLLM engine for the security tests: one model, a /metrics that counts its scrapes, and a
chat completion that answers "ok" (streamed or not) without any model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
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
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "x"}]})

    async def _metrics(self, _: Request) -> Response:
        self.scrapes += 1
        return PlainTextResponse("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n")

    async def _health(self, _: Request) -> Response:
        return PlainTextResponse("")

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        choice = {"index": 0, "finish_reason": "stop"}
        base = {"id": "chatcmpl-fake", "created": 0, "model": MODEL}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "ok"}
            answer = {**base, "object": "chat.completion", "usage": usage}
            return JSONResponse({**answer, "choices": [{**choice, "message": message}]})

        async def events() -> AsyncIterator[bytes]:
            chunk = {**base, "object": "chat.completion.chunk"}
            delta = {"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}
            for data in (
                {**chunk, "choices": [delta]},
                {**chunk, "choices": [{**choice, "delta": {}}]},
                {**chunk, "choices": [], "usage": usage},
            ):
                yield f"data: {json.dumps(data)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
