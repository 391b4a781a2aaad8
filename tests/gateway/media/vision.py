"""What the vision tests through the gateway share: a transport that records what the gateway sends
its engines, the gateway on it, and readers of the engine's side of an answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
from PIL import Image

from gateway import Settings, create_app
from tests.adapters.media import data_url, png
from tests.servers import ThreadedServer


class RecordingTransport(httpx.AsyncBaseTransport):
    """The gateway's engine traffic, passed on unchanged, with every chat request body kept."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._lock = threading.Lock()
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            body = await request.aread()
            with self._lock:
                self.bodies.append((f"{request.url.host}:{request.url.port}", orjson.loads(body)))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def last(self) -> tuple[str, dict[str, Any]]:
        with self._lock:
            return self.bodies[-1]


@contextmanager
def recording_gateway(settings: Settings, recorder: RecordingTransport, timeout: float) -> Iterator[str]:
    """A gateway whose engine traffic goes through `recorder`; yields its URL."""
    client = httpx.AsyncClient(transport=recorder, timeout=httpx.Timeout(timeout, connect=10))
    with ThreadedServer(create_app(settings, http_client=client)) as server:
        yield server.url


def image_part(image: Image.Image) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(png(image), "image/png")}}


def engine_tokens(completion: Any) -> list[str]:
    """The prompt the engine tokenized, token by token, from vLLM's per-token prompt logprobs."""
    tokens = []
    for entry in completion.model_extra["prompt_logprobs"][1:]:  # the first token has no logprob
        (token,) = [value for value in entry.values() if value.get("rank") is not None] or list(
            entry.values()
        )
        tokens.append(token["decoded_token"])
    return tokens


def sent_parts(recorder: RecordingTransport, port: int) -> list[dict[str, Any]]:
    """The content parts of the last chat request the gateway sent, checked to have gone to `port`."""
    where, body = recorder.last()
    assert where.endswith(f":{port}")
    parts: list[dict[str, Any]] = body["messages"][0]["content"]
    return parts
