"""The health probes' own client (issue 24): with the engine pool full of held-open streams, a deep
check still gets a connection at once, so readiness stays green under load while the engine is fine.

Against a real fixed-latency upstream process (bench/upstream.py) and a gateway with a pool of
four connections, the contrast beside it: probes sharing the engine client (what a handed-in client
still gives) queue behind the four streams and /readyz?engines=1 turns red.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bench.servers import upstream
from bench.upstream import Latency
from gateway import Settings, create_app
from gateway.clients import engine_client
from gateway.errors import EngineTimeout
from gateway.upstreams import make_upstream
from gateway.upstreams.interface import UpstreamSpec
from tests.servers import ThreadedServer

MODEL = "fixed"
POOL = 4  # TANTRA_MAX_CONNECTIONS: the streams below take every connection
INTERVAL_S = 0.3
TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def fixed_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A token every 200 ms: a stream of 1,000 is held open for as long as the test needs it.
    latency = Latency(ttft_s=0.01, itl_s=0.2, default_tokens=1)
    service, url = upstream(tmp_path_factory.mktemp("probes-upstream"), latency, MODEL, [])
    with service:
        yield url
        # Killed, not stopped: it streams on to a client that left (uvicorn drops what it sends
        # then), and a graceful stop would wait 20 s for the held streams' 1,000 tokens.
        os.kill(service.pid, signal.SIGKILL)


def settings_for(gateway_settings: Callable[..., Settings], url: str) -> Settings:
    return gateway_settings(
        auth_enabled=False,
        engine_url=url,
        max_connections=POOL,
        health_deep=True,  # /health, /v1/models and a one-token completion per check
        health_interval_s=INTERVAL_S,
        health_timeout_s=TIMEOUT_S,
    )


@asynccontextmanager
async def held_streams(url: str, count: int) -> AsyncIterator[None]:
    """`count` streamed chats through the gateway, each past its first event, held open."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1000,
        "stream": True,
    }
    started = [asyncio.Event() for _ in range(count)]

    async def hold(client: httpx.AsyncClient, begun: asyncio.Event) -> None:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for _ in response.aiter_raw():
                begun.set()

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count)) as client:
        tasks = [asyncio.create_task(hold(client, begun)) for begun in started]
        try:
            await asyncio.wait_for(asyncio.gather(*(begun.wait() for begun in started)), 60)
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def readiness_after(url: str, since: float) -> tuple[int, dict[str, Any]]:
    """/readyz?engines=1 once the engine's verdict comes from a check that ended after `since`
    (the loop's clock: the gateway runs in this process), with the check's details."""
    async with httpx.AsyncClient(timeout=30) as client:
        deadline = time.monotonic() + 3 * (INTERVAL_S + TIMEOUT_S) + 10
        while time.monotonic() < deadline:
            answer = await client.get(url + "/readyz?engines=1")
            engine = (await client.get(url + "/readyz")).json()["upstreams"]["engine"]
            if engine["checked_s_ago"] is not None and time.monotonic() - engine["checked_s_ago"] > since:
                return answer.status_code, engine
            await asyncio.sleep(0.1)
    raise AssertionError("no health check ended while the streams were held")


async def test_probes_answer_in_time_with_the_engine_pool_full(
    fixed_upstream: str, gateway_settings: Callable[..., Settings]
) -> None:
    with ThreadedServer(create_app(settings_for(gateway_settings, fixed_upstream))) as server:
        async with held_streams(server.url, POOL):
            # The streams hold every connection of the engine pool from here on.
            status, engine = await readiness_after(server.url, time.monotonic())
            assert status == 200, engine
            assert engine["healthy"] and engine["reason"] is None
            assert engine["latency_ms"] < TIMEOUT_S * 1000
            # A few rounds more, all green while the streams stay open.
            for _ in range(3):
                status, engine = await readiness_after(server.url, time.monotonic())
                assert status == 200 and engine["healthy"], engine


async def test_probes_sharing_the_engine_pool_queue_behind_the_streams(
    fixed_upstream: str, gateway_settings: Callable[..., Settings]
) -> None:
    """What the gateway did before: the same load turns readiness red although the engine is fine."""
    settings = settings_for(gateway_settings, fixed_upstream)
    client = engine_client(settings)  # a handed-in client carries the probes too
    try:
        with ThreadedServer(create_app(settings, http_client=client)) as server:
            async with held_streams(server.url, POOL):
                # The first check to start now finds no connection: red once it times out.
                status, engine = await readiness_after(server.url, time.monotonic() + TIMEOUT_S)
                assert status == 503, engine
                assert f"no answer within {TIMEOUT_S:g}s" in engine["reason"]
    finally:
        await client.aclose()


async def test_an_upstreams_probes_go_through_the_probe_client() -> None:
    """Both kinds of upstream send their health checks (and vLLM's metrics scrapes) on the probes'
    client, requests on the other."""
    seen: list[str] = []

    def probes(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": MODEL}]})
        if request.url.path == "/v1/completions":
            return httpx.Response(200, json={"choices": [{"text": "ok"}]})
        return httpx.Response(200)

    def busy(request: httpx.Request) -> httpx.Response:
        raise httpx.PoolTimeout("every connection is streaming")

    engine_pool = httpx.AsyncClient(transport=httpx.MockTransport(busy))
    probe_pool = httpx.AsyncClient(transport=httpx.MockTransport(probes))
    async with engine_pool, probe_pool:
        vllm = make_upstream(UpstreamSpec("vllm", "http://engine"), engine_pool, probe_pool)
        assert await vllm.is_healthy(1.0)
        assert await vllm.deep_check(MODEL, generate=True) == MODEL
        assert seen == ["/health", "/health", "/v1/models", "/v1/completions"]
        # /metrics/engines' scrape too: an engine under load is not shown down for want of a connection.
        assert await vllm.scrape_metrics(1.0) == ""
        assert seen[-1] == "/metrics"
        provider = make_upstream(UpstreamSpec("openai", "http://provider", "sk-1"), engine_pool, probe_pool)
        assert await provider.is_healthy(1.0)
        assert await provider.deep_check(None, generate=True) == MODEL
        # Requests stay on the engine pool.
        with pytest.raises(EngineTimeout):
            await vllm.open("/v1/chat/completions", b"{}", {})
