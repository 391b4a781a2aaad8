"""Issue 16, point 2: TPM holds for every request. Real usage counts in the window in which it is
settled, even for a request that outlived the window it was reserved in; a request without
`max_tokens` reserves what the engine may really generate (the model's context less the prompt), or
the configured cap, which is then sent to the engine as its limit; and text the gateway derives from
media is reserved once known, before the engine runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from gateway import Settings, create_app
from gateway.errors import RateLimited
from gateway.limits import Demand, RateLimiter, Scope
from gateway.store import Limits
from tests.adapters.media import data_url
from tests.gateway.helpers import AdminClient, bearer
from tests.security.rows import no_ledger
from tests.servers import ThreadedServer

MODEL = "long-context"


async def test_a_request_that_outlives_the_window_is_counted_when_it_settles(redis: Redis) -> None:
    limiter = RateLimiter(
        redis, window_s=1, lease_s=60, failure_mode="open", seed=no_ledger, prefix="sec-tpm"
    )
    scope = Scope("key", "k-stream", Limits(tpm=1000))
    stream = await limiter.reserve([scope], Demand(300))
    await asyncio.sleep(1.3)  # the stream runs past its window...
    await limiter.settle(stream, tokens=50_000)  # ...and really used 50,000 tokens
    with pytest.raises(RateLimited):
        await limiter.reserve([scope], Demand(300))


class Engine:
    """Answers like vLLM (a model with a 32k context) and keeps every body it was sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            card = {"id": MODEL, "object": "model", "max_model_len": 32_768}
            return httpx.Response(200, json={"object": "list", "data": [card]})
        self.bodies.append(orjson.loads(request.content))
        usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
        message = {"role": "assistant", "content": "ok"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return httpx.Response(
            200, json={"id": "c", "object": "chat.completion", "choices": [choice], "usage": usage}
        )


@pytest.fixture
def gateway(
    gateway_settings: Callable[..., Settings], admin_key: str
) -> Iterator[Callable[..., tuple[str, Engine, AdminClient]]]:
    servers: list[ThreadedServer] = []

    def start(**overrides: Any) -> tuple[str, Engine, AdminClient]:
        engine = Engine()
        settings = gateway_settings(models={MODEL: {"accepts": ["text"]}}, **overrides)
        client = httpx.AsyncClient(transport=httpx.MockTransport(engine))
        server = ThreadedServer(create_app(settings, http_client=client)).__enter__()
        servers.append(server)
        return server.url, engine, AdminClient(server.url, admin_key)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def _chat(url: str, key: str, content: Any, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(url + "/v1/chat/completions", headers=bearer(key), json=body, timeout=60)


def test_no_max_tokens_reserves_what_the_engine_may_generate(
    gateway: Callable[..., tuple[str, Engine, AdminClient]],
) -> None:
    url, engine, admin = gateway()
    key, _ = admin.key(admin.tenant("sec-no-max-tokens")["id"], tpm=2000)
    answer = _chat(url, key, "Write forever.", ignore_eos=True)
    # The engine could generate some 32,000 tokens: more than the key's 2,000 per window.
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["type"] == "tokens"
    assert engine.bodies == []
    assert _chat(url, key, "Write a little.", max_tokens=100).status_code == 200


def test_a_configured_cap_is_reserved_and_sent_to_the_engine(
    gateway: Callable[..., tuple[str, Engine, AdminClient]],
) -> None:
    url, engine, admin = gateway(limits_max_completion_tokens=300)
    key, _ = admin.key(admin.tenant("sec-capped")["id"], tpm=2000)
    answer = _chat(url, key, "Write forever.", ignore_eos=True)
    assert answer.status_code == 200, answer.text
    assert engine.bodies[-1].get("max_completion_tokens") == 300  # the engine stops where reserved
    reserved = 2000 - int(answer.headers["x-ratelimit-remaining-tokens"])
    assert 300 < reserved < 400  # the prompt and the cap


def test_text_derived_from_media_is_reserved(gateway: Callable[..., tuple[str, Engine, AdminClient]]) -> None:
    url, engine, admin = gateway()
    key, _ = admin.key(admin.tenant("sec-media-tokens")["id"], tpm=3000)
    small = {"type": "file", "file": {"file_data": data_url(b"a short note", "text/plain")}}
    assert _chat(url, key, [{"type": "text", "text": "Read it."}, small], max_tokens=10).status_code == 200
    # 40,000 characters of text (some 10,000 tokens) in a document: over the key's 3,000.
    long = {"type": "file", "file": {"file_data": data_url(b"word " * 8000, "text/plain")}}
    answer = _chat(url, key, [{"type": "text", "text": "Read it."}, long], max_tokens=10)
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["type"] == "tokens"
    assert len(engine.bodies) == 1
