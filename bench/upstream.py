"""A fixed-latency OpenAI-shaped upstream: the yardstick that isolates what a gateway adds.

Raw ASGI on uvicorn (uvloop + httptools), every byte it can prebuild prebuilt, so
the upstream is never the bottleneck. A request for N tokens (`max_tokens` or
`max_completion_tokens`, default `--tokens`) takes `ttft` before the first token
and `itl` between tokens; JSON answers arrive after the same total time. Streams
end with a usage chunk when `stream_options.include_usage` is set, then `[DONE]`.

Run it on its own: `python -m bench.upstream --port 9100 --ttft-ms 20 --itl-ms 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_DONE = b"data: [DONE]\n\n"
_TOKEN = "tok "
ALIAS_SUFFIX = "-long"


@dataclass(frozen=True)
class Latency:
    """The upstream's timing model: time to the first token, then a fixed gap per token."""

    ttft_s: float = 0.02
    itl_s: float = 0.005
    default_tokens: int = 16


class FixedLatencyUpstream:
    """The ASGI app. One instance serves one model name."""

    def __init__(self, model: str, latency: Latency) -> None:
        self.model = model
        self.latency = latency
        self._ids = itertools.count()
        card = {"id": model, "object": "model", "created": 0, "owned_by": "bench"}
        # A second name for the same model: the other candidate of the model-choice profiles.
        alias = {**card, "id": f"{model}{ALIAS_SUFFIX}"}
        self._models = orjson.dumps({"object": "list", "data": [card, alias]})
        self._card = orjson.dumps(card)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope["path"]
        if scope["method"] == "GET":
            if path in ("/health", "/healthz", "/health/liveliness"):
                await _respond(send, 200, b"{}")
            elif path == "/v1/models":
                await _respond(send, 200, self._models)
            elif path == f"/v1/models/{self.model}":
                await _respond(send, 200, self._card)
            else:
                await _respond(send, 404, b'{"error": {"message": "not found"}}')
            return
        if path == "/v1/embeddings":
            await _respond(send, 200, _embeddings(orjson.loads(await _read_body(receive))))
            return
        if path not in ("/v1/chat/completions", "/v1/completions"):
            await _respond(send, 404, b'{"error": {"message": "not found"}}')
            return
        body = await _read_body(receive)
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _respond(send, 400, b'{"error": {"message": "bad json"}}')
            return
        tokens = _requested_tokens(request, self.latency.default_tokens)
        chat = path == "/v1/chat/completions"
        rid = f"bench-{next(self._ids)}"
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            await self._stream(send, rid, chat, tokens, include_usage)
        else:
            await asyncio.sleep(self.latency.ttft_s + self.latency.itl_s * (tokens - 1))
            await _respond(send, 200, self._completion(rid, chat, tokens))

    async def _stream(self, send: Send, rid: str, chat: bool, tokens: int, include_usage: bool) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        chunk = self._chunk(rid, chat)
        await asyncio.sleep(self.latency.ttft_s)
        for index in range(tokens):
            if index:
                await asyncio.sleep(self.latency.itl_s)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        tail = self._usage_chunk(rid, chat, tokens) if include_usage else b""
        await send({"type": "http.response.body", "body": tail + _DONE, "more_body": False})

    def _chunk(self, rid: str, chat: bool) -> bytes:
        if chat:
            choice: dict[str, Any] = {"index": 0, "delta": {"content": _TOKEN}, "finish_reason": None}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": _TOKEN, "finish_reason": None}
            obj = "text_completion"
        event = {"id": rid, "object": obj, "created": 0, "model": self.model, "choices": [choice]}
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def _usage_chunk(self, rid: str, chat: bool, tokens: int) -> bytes:
        obj = "chat.completion.chunk" if chat else "text_completion"
        event = {
            "id": rid,
            "object": obj,
            "created": 0,
            "model": self.model,
            "choices": [],
            "usage": _usage(tokens),
        }
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def _completion(self, rid: str, chat: bool, tokens: int) -> bytes:
        text = _TOKEN * tokens
        if chat:
            message = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "length"}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "length"}
            obj = "text_completion"
        return orjson.dumps(
            {
                "id": rid,
                "object": obj,
                "created": 0,
                "model": self.model,
                "choices": [choice],
                "usage": _usage(tokens),
            }
        )


def _embeddings(request: dict[str, Any]) -> bytes:
    """At once (the classifier's cost is the gateway's work around the call, not the engine's): a
    small vector per text from its words' hashes, so that texts sharing words are near."""
    texts = request.get("input")
    texts = texts if isinstance(texts, list) else [texts]
    data = []
    for index, text in enumerate(texts):
        vector = [0.0] * 16
        for word in str(text).lower().split():
            vector[zlib.crc32(word.encode()) % 16] += 1.0
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
    return orjson.dumps({"object": "list", "model": request.get("model"), "data": data, "usage": usage})


def _usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}


def _requested_tokens(request: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, int) and value > 0:
            return min(value, 4096)
    return default


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--ttft-ms", type=float, default=20.0)
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args(argv)
    latency = Latency(args.ttft_ms / 1000, args.itl_ms / 1000, args.tokens)
    uvicorn.run(
        FixedLatencyUpstream(args.model, latency),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
        # Longer than any client's idle pool timeout, so a reused connection is never one we just closed.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
