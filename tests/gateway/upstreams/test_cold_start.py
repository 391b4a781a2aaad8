"""Scale to zero's cold start (issue 26, point 2): with no engine pod in the discovered upstream, a
request waits up to `cold_start_wait_s` for the real DNS server (dnslib, tests/dns_records.py) to
publish one, counted in `tantra_requests_waiting{model}` meanwhile, and is then served by it; with
none published in time it gets the 503 envelope with Retry-After. The engines are an httpx mock
transport: what is under test is the hold, the discovery loop and the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import EngineUnavailable
from gateway.observability.metrics import GatewayMetrics
from gateway.upstreams import ModelCatalog
from gateway.upstreams.coldstart import ColdStart
from gateway.upstreams.dispatch import Dispatcher, RetryPolicy
from gateway.upstreams.pool import UpstreamPool
from gateway.upstreams.retry import RetryBudget
from gateway.upstreams.stream import UpstreamRequest
from gateway.upstreams.timeouts import Timeouts
from tests.dns_records import RecordServer
from tests.gateway.upstreams.test_discovery import NAME, discovered_pool, until

CHAT = "/v1/chat/completions"
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "tiny",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


@pytest.fixture(scope="module")
def dns() -> Iterator[RecordServer]:
    with RecordServer() as server:
        yield server


def _engine(request: httpx.Request) -> httpx.Response:
    """Every discovered address answers as vLLM would: its model list, and a chat completion."""
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"object": "list", "data": [{"id": "tiny", "object": "model"}]})
    return httpx.Response(200, json=ANSWER)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_engine)) as http:
        yield http


def dispatcher(pool: UpstreamPool, cold_start: ColdStart) -> Dispatcher:
    return Dispatcher(
        pool,
        budget=RetryBudget(ratio=0.5, window_s=10, minimum=5),
        retry=lambda: RetryPolicy(1, 0.0, 0.01),
        timeouts=lambda: Timeouts(connect_s=1, ttft_s=5, inter_token_s=1, total_s=30),
        cold_start=cold_start,
    )


def chat() -> UpstreamRequest:
    payload = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    return UpstreamRequest(CHAT, orjson.dumps(payload), payload, "tiny", {})


def waiting(metrics: GatewayMetrics, model: str = "tiny") -> float:
    return metrics.registry.get_sample_value("tantra_requests_waiting", {"model": model}) or 0.0


async def test_a_request_waits_for_the_first_engine_and_is_served_by_it(
    dns: RecordServer, client: httpx.AsyncClient
) -> None:
    dns.set(NAME, None)  # scaled to zero: the headless Service has no ready pod
    metrics = GatewayMetrics(CollectorRegistry())
    pool = discovered_pool(client, dns, metrics=metrics)
    cold_start = ColdStart(pool, wait_s=10.0, metrics=metrics)
    pool.start()
    try:
        answer = asyncio.create_task(dispatcher(pool, cold_start).answer(chat()))
        await until(lambda: waiting(metrics) == 1)  # held, and counted for the activation trigger
        assert not answer.done()
        dns.set(NAME, ("10.0.0.7",))  # the first engine pod is ready
        body, member, model = await asyncio.wait_for(answer, 5)
        assert member == "engine@10.0.0.7" and model == "tiny"
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "hi"
        assert waiting(metrics) == 0
    finally:
        await pool.close()


async def test_with_no_engine_in_time_the_request_gets_503_with_retry_after(
    dns: RecordServer, client: httpx.AsyncClient
) -> None:
    dns.set(NAME, None)
    metrics = GatewayMetrics(CollectorRegistry())
    pool = discovered_pool(client, dns, metrics=metrics)
    cold_start = ColdStart(pool, wait_s=0.5, metrics=metrics)
    pool.start()
    try:
        with pytest.raises(EngineUnavailable) as refused:
            await dispatcher(pool, cold_start).answer(chat())
        error = refused.value
        assert error.status == 503 and error.headers == {"retry-after": "8"}
        assert error.body()["error"]["code"] == "engine_unavailable"
        assert waiting(metrics) == 0
    finally:
        await pool.close()


async def test_the_catalogue_finds_the_model_of_an_engine_that_came_up_during_the_wait(
    dns: RecordServer, client: httpx.AsyncClient
) -> None:
    dns.set(NAME, None)
    pool = discovered_pool(client, dns)
    cold_start = ColdStart(pool, wait_s=10.0)
    catalog = ModelCatalog(lambda: pool.list_models(1.0), 60.0, cold_start.hold)
    pool.start()
    try:
        card = asyncio.create_task(catalog.resolve("tiny"))
        await asyncio.sleep(0.3)
        assert not card.done()
        dns.set(NAME, ("10.0.0.8",))
        assert (await asyncio.wait_for(card, 5))["id"] == "tiny"
    finally:
        await pool.close()


async def test_no_wait_without_the_setting_or_with_a_member(
    dns: RecordServer, client: httpx.AsyncClient
) -> None:
    dns.set(NAME, None)
    pool = discovered_pool(client, dns)
    await ColdStart(pool, wait_s=0).hold("tiny")  # off: returns at once (the 503 follows)
    pool.set_addresses("engine", ("10.0.0.9",))
    await ColdStart(pool, wait_s=60).hold("tiny")  # a member serves it: no wait
