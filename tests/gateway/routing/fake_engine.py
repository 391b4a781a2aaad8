"""A stand-in engine for the in-process tests of virtual models: three chat models of different
context lengths (`small`, `large`, `vision`), an embedding model of bag-of-words vectors (`emb`), and answers
naming the model they were asked for. The proof with the real engines is test_auto_engine.py."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CARDS = [
    {"id": "small", "object": "model", "created": 0, "owned_by": "x", "max_model_len": 256},
    {"id": "large", "object": "model", "created": 0, "owned_by": "x", "max_model_len": 8192},
    {"id": "emb", "object": "model", "created": 0, "owned_by": "x", "max_model_len": 512},
    {"id": "vision", "object": "model", "created": 0, "owned_by": "x", "max_model_len": 128},
]
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def bag_of_words(text: str) -> list[float]:
    vector = np.zeros(64, dtype=np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
    return vector.tolist()


class FakeEngine:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/health", lambda _: PlainTextResponse("")),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": CARDS})

    async def _embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(t)}
            for i, t in enumerate(body["input"])
        ]
        return JSONResponse({"object": "list", "model": "emb", "data": data, "usage": USAGE})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        model = body["model"]
        if body.get("stream"):
            return StreamingResponse(_chunks(model), media_type="text/event-stream")
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
        answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model}
        return JSONResponse({**answer, "choices": [choice], "usage": USAGE})

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        choice = {"index": 0, "finish_reason": "stop", "text": "ok", "logprobs": None}
        answer = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"]}
        return JSONResponse({**answer, "choices": [choice], "usage": USAGE})

    async def _responses(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        text = {"type": "output_text", "text": "ok", "annotations": []}
        item = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [text],
        }
        usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
        answer = {
            "id": "resp_x",
            "object": "response",
            "created_at": 0,
            "model": body["model"],
            "status": "completed",
        }
        return JSONResponse({**answer, "output": [item], "usage": usage})


async def _chunks(model: str) -> Any:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
    for delta, finish in (({"role": "assistant", "content": "o"}, None), ({"content": "k"}, "stop")):
        event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield b"data: " + orjson.dumps(event) + b"\n\n"
    yield b"data: " + orjson.dumps({**base, "choices": [], "usage": USAGE}) + b"\n\n"
    yield b"data: [DONE]\n\n"
