"""The Upstream interface against fake servers (httpx.MockTransport): both classes conform to it,
the factory is the one place a `kind` becomes a class, and health checks and metrics federation
reach the upstreams through the pool, following its live reconfigurations."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.observability.federation import federate
from gateway.observability.health import HealthMonitor, HealthPolicy
from gateway.settings.sections import UpstreamConfig
from gateway.upstreams import (
    ProbeFailed,
    ProviderUpstream,
    Upstream,
    UpstreamSpec,
    VllmUpstream,
    make_upstream,
)
from gateway.upstreams.factory import capabilities_of, config_problems
from tests.resilience.test_units import Handler, make_pool

METRICS = '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0"} 2.0\n'


def engine(model: str = "tiny", *, completions: int = 200) -> Handler:
    """A fake vLLM server: /health, one model, one-token completions, /metrics."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": model, "object": "model"}]})
        if path == "/v1/completions":
            return httpx.Response(completions, json={"choices": [{"text": "k"}]})
        if path == "/metrics":
            return httpx.Response(200, text=METRICS)
        return httpx.Response(200 if path == "/health" else 404)

    return handle


def provider(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"data": [{"id": "gpt-x"}]})
    return httpx.Response(500)  # anything else (a completion, /metrics) must not be asked


def external(url: str = "http://ext") -> UpstreamConfig:
    return UpstreamConfig.model_validate({"url": url, "kind": "openai"})


async def test_both_classes_are_upstreams_and_the_factory_picks_them_by_kind() -> None:
    async with httpx.AsyncClient() as client:
        vllm = make_upstream(UpstreamSpec("vllm", "http://a/"), client)
        ext = make_upstream(UpstreamSpec("openai", "http://ext", "sk-1"), client)
        assert isinstance(vllm, VllmUpstream) and isinstance(ext, ProviderUpstream)
        assert isinstance(vllm, Upstream) and isinstance(ext, Upstream)  # the runtime Protocol check
        assert (vllm.kind, vllm.base_url) == ("vllm", "http://a")
        assert vllm.same_as(UpstreamSpec("vllm", "http://a"))
        assert not ext.same_as(UpstreamSpec("openai", "http://ext", "sk-2"))  # a rotated key
        assert vllm.capabilities == capabilities_of("vllm")
        assert vllm.capabilities.continues_streams and vllm.capabilities.serves_metrics
        assert not ext.capabilities.continues_streams and not ext.capabilities.has_health_endpoint
        with pytest.raises(ValueError, match="unknown upstream kind 'grpc'"):
            make_upstream(UpstreamSpec("grpc", "http://g"), client)


def test_a_key_for_a_kind_that_sends_none_is_a_config_problem() -> None:
    keyed = UpstreamConfig.model_validate({"url": "http://e", "api_key_env": "KEY"})
    fine = UpstreamConfig.model_validate({"url": "http://ext", "kind": "openai", "api_key_env": "KEY"})
    assert config_problems({"local": keyed, "ext": fine}) == [
        ("upstreams.local.api_key_env", "api_key_env is for `kind: openai` upstreams")
    ]


async def test_the_deep_check_generates_a_token_and_names_what_failed() -> None:
    pool, client = make_pool({"a": engine(), "wedged": engine(completions=503), "ext": provider})
    pool.reconfigure(
        {"a": "http://a", "wedged": "http://wedged", "ext": "http://ext"}, {"ext": external()}, {}
    )
    async with client:
        assert await pool.members["a"].upstream.deep_check("other", generate=True) == "tiny"
        with pytest.raises(ProbeFailed, match="a one-token completion answered 503"):
            await pool.members["wedged"].upstream.deep_check(None, generate=True)
        assert await pool.members["wedged"].upstream.deep_check(None, generate=False) == "tiny"
        assert await pool.members["ext"].upstream.deep_check(None, generate=True) == "gpt-x"

    async with httpx.AsyncClient() as closed_port:
        dead = make_upstream(UpstreamSpec("vllm", "http://127.0.0.1:9"), closed_port)
        with pytest.raises(ProbeFailed, match="ConnectError"):
            await dead.deep_check(None, generate=True)


async def test_health_follows_the_pool_through_a_reconfigure() -> None:
    pool, client = make_pool({"a": engine(), "b": engine(), "ext": provider})
    pool.reconfigure({"a": "http://a"}, {}, {})
    monitor = HealthMonitor(pool, HealthPolicy(interval_s=60, timeout_s=2))
    async with client:
        monitor.start()
        try:
            await monitor.settled()
            assert monitor.report().upstreams["a"]["healthy"]

            # A reload: `a` goes, `b` and a provider come. The monitor probes `b` at once (not an
            # interval later); the provider is left to its breaker.
            pool.reconfigure({"b": "http://b", "ext": "http://ext"}, {"ext": external()}, {})
            assert set(monitor.report().upstreams) == {"b"}
            async with asyncio.timeout(2):
                while not monitor.report().upstreams["b"]["healthy"]:  # noqa: ASYNC110 (polls a verdict)
                    await asyncio.sleep(0.01)

            # Same name, another server: the verdict about the old one does not carry over.
            pool.reconfigure({"b": "http://a"}, {}, {})
            assert monitor.report().upstreams["b"]["reason"] == "not checked yet"
        finally:
            await monitor.close()


async def test_federation_scrapes_the_pools_metrics_serving_upstreams() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    pool, client = make_pool({"a": engine(), "b": down, "ext": provider})
    pool.reconfigure({"a": "http://a", "b": "http://b", "ext": "http://ext"}, {"ext": external()}, {})
    async with client:
        text = (await federate(pool.upstreams(), timeout_s=1)).decode()
    assert 'tantra_engine_scrape_up{upstream="a"} 1' in text
    assert 'tantra_engine_scrape_up{upstream="b"} 0' in text
    assert 'vllm:num_requests_running{upstream="a",engine="0"} 2.0' in text
    assert '"ext"' not in text  # a provider has no metrics of ours: left out, not shown down
