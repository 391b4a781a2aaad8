"""A stand-in engine for the memory service's unit tests: an embedding model whose vectors are bags
of words (texts sharing words are near), and a chat model that answers the extraction's JSON with
the facts it is told to (`FakeModels.facts`), the graph of a text it is told to (`graphs`, by the
text), and the summary it is told to (`summary`, for compression). The proof with the real
engines is test_mem0_client.py."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

CHAT = "fake-chat"
EMBEDDING = "fake-embedding"
DIM = 64


def bag_of_words(text: str) -> list[float]:
    vector = np.zeros(DIM, dtype=np.float32)
    for word in re.findall(r"[a-z]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return vector.tolist()


class FakeModels:
    def __init__(self) -> None:
        self.facts: list[str] = []
        self.extractions: list[dict[str, Any]] = []
        self.graphs: dict[str, dict[str, Any]] = {}
        self.summary = "a summary"
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/health", self._health),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        data = [{"id": name, "object": "model", "owned_by": "x"} for name in (CHAT, EMBEDDING)]
        return JSONResponse({"object": "list", "data": data})

    async def _health(self, _: Request) -> Response:
        return PlainTextResponse("")

    async def _embeddings(self, request: Request) -> Response:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": 3 * len(texts), "total_tokens": 3 * len(texts)}
        return JSONResponse({"object": "list", "model": EMBEDDING, "data": data, "usage": usage})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.extractions.append(body)
        schema = body.get("response_format", {}).get("json_schema", {}).get("name")
        text = body["messages"][-1]["content"]
        if schema == "graph":
            found = self.graphs.get(text, {"entities": [], "relations": []})
        elif schema == "summary":
            found = {"summary": self.summary}
        else:
            found = {"facts": self.facts}
        content = orjson.dumps(found).decode()
        usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}
        message = {"role": "assistant", "content": content}
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        answer = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": CHAT}
        return JSONResponse({**answer, "choices": [choice], "usage": usage})
