"""A stand-in engine for the vector stores' unit tests: an embedding model whose vectors are bags of
words (texts sharing words are near), its tokenizer (one token per word: /tokenize, /detokenize), and
a Responses model that answers one fixed message (streamed as vLLM streams it when asked) and counts
the words it was given as its input tokens (so a test sees what the gateway put in its context). The
proof with the real engines is test_vector_stores.py."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.gateway.memory.fake_models import bag_of_words

CHAT = "fake-chat"
EMBEDDING = "fake-embedding"


class FakeEngine:
    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.words: dict[int, str] = {}
        self.responses: list[dict[str, Any]] = []
        self.embedded: list[list[str]] = []
        # Set: the embeddings endpoint refuses every request with this 400 message.
        self.refuse_embeddings: str | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/health", self._health),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/tokenize", self._tokenize, methods=["POST"]),
                Route("/detokenize", self._detokenize, methods=["POST"]),
                Route("/v1/responses", self._respond, methods=["POST"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        data = [{"id": name, "object": "model", "owned_by": "x"} for name in (CHAT, EMBEDDING)]
        return JSONResponse({"object": "list", "data": data})

    async def _health(self, _: Request) -> Response:
        return PlainTextResponse("")

    async def _embeddings(self, request: Request) -> Response:
        if self.refuse_embeddings is not None:
            error = {"message": self.refuse_embeddings, "type": "BadRequestError", "param": None, "code": 400}
            return JSONResponse({"error": error}, status_code=400)
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.embedded.append(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": bag_of_words(t)} for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "model": EMBEDDING,
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _tokenize(self, request: Request) -> Response:
        body = await request.json()
        ids = [self.vocabulary.setdefault(w, len(self.vocabulary) + 1) for w in body["prompt"].split()]
        self.words = {i: w for w, i in self.vocabulary.items()}
        strs = body["prompt"].split() if body.get("return_token_strs") else None
        return JSONResponse({"tokens": ids, "token_strs": strs, "count": len(ids), "max_model_len": 512})

    async def _detokenize(self, request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"prompt": " ".join(self.words[i] for i in body["tokens"])})

    async def _respond(self, request: Request) -> Response:
        body = await request.json()
        self.responses.append(body)
        words = len(re.findall(r"\S+", str(body.get("input"))))
        message = {
            "type": "message",
            "id": "msg_fake",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "An answer.", "annotations": []}],
        }
        usage = {"input_tokens": words, "output_tokens": 2, "total_tokens": words + 2}
        answer = {
            "id": "resp_fake",
            "object": "response",
            "created_at": 0,
            "model": CHAT,
            "status": "completed",
            "output": [message],
            "usage": usage,
            "tools": body.get("tools") or [],
        }
        if body.get("stream"):
            return StreamingResponse(_sse(answer), media_type="text/event-stream")
        return JSONResponse(answer)


async def _sse(answer: dict[str, Any]) -> AsyncIterator[bytes]:
    """The answer as vLLM streams it: the response created and in progress with no output, the
    message's item, part and text deltas (`output_index` 0: the engine's first item), completed."""
    message = answer["output"][0]
    text = message["content"][0]["text"]
    started = {**answer, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": part},
        *(
            {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            for piece in re.findall(r"\S+\s*", text)
        ),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": answer},
    ]
    for number, event in enumerate(events):
        data = json.dumps({**event, "sequence_number": number})
        yield f"event: {event['type']}\ndata: {data}\n\n".encode()
