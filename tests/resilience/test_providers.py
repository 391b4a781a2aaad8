"""External OpenAI-compatible upstreams (`kind: openai`) against fake ones: the key from the
environment on every call, /v1/models as health, no tokenizer, a refused key as a server error
that opens the breaker, and readiness left to the local engines. The real-parts test (a LiteLLM
proxy in front of the session's vLLM engine) is test_litellm_vllm.py."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway import Settings
from gateway.errors import UpstreamAuthFailed
from gateway.observability.health import HealthMonitor, HealthPolicy
from gateway.settings.load import ConfigError, load_settings
from gateway.settings.sections import ModelRoute, UpstreamConfig
from gateway.upstreams.factory import capabilities_of
from gateway.upstreams.interface import UpstreamSpec
from gateway.upstreams.pool import UpstreamPool
from gateway.upstreams.provider import ProviderUpstream
from gateway.upstreams.timeouts import Deadline
from tests.resilience.test_units import (
    CHAT,
    Handler,
    chunk,
    make_dispatcher,
    make_pool,
    refusing,
    relay_with_failover,
    sse,
    streaming,
)

KEY_ENV = "TANTRA_TEST_PROVIDER_KEY"
DONE = b"data: [DONE]\n\n"


def external(**fields: Any) -> UpstreamConfig:
    return UpstreamConfig.model_validate({"url": "http://ext", "kind": "openai", **fields})


def routed(handlers: dict[str, Handler], configs: dict[str, UpstreamConfig]) -> tuple[UpstreamPool, Any]:
    """`chat` on the vLLM server `local`, falling back to `chat-ext` on the provider `ext`."""
    pool, client = make_pool(handlers)
    pool.reconfigure(
        {name: f"http://{name}" for name in handlers},
        configs,
        {
            "chat": ModelRoute(upstreams=["local"], fallbacks=["chat-ext"]),
            "chat-ext": ModelRoute(upstreams=["ext"], served_name="provider-model"),
        },
    )
    return pool, client


def test_the_key_comes_from_the_named_variable_and_a_missing_one_is_a_config_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    upstreams = {
        "local": {"url": "http://engine:8001"},
        "ext": {"url": "https://api.example.com", "kind": "openai", "api_key_env": KEY_ENV},
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(Settings, upstreams=upstreams)
    assert f"upstreams.ext.api_key_env: environment variable {KEY_ENV} is not set" in caught.value.problems

    monkeypatch.setenv(KEY_ENV, "sk-provider")
    settings = load_settings(Settings, upstreams=upstreams)
    assert settings.upstreams["ext"].api_key() == "sk-provider"
    assert "sk-provider" not in settings.model_dump_json()  # only the variable's name is config
    # Readiness probes and /metrics/engines scrapes are for the vLLM servers only.
    can = {name: capabilities_of(upstream.kind) for name, upstream in settings.upstreams.items()}
    assert {name for name, c in can.items() if c.has_health_endpoint and c.serves_metrics} == {"local"}
    assert set(settings.upstream_urls()) == {"local", "ext"}

    with pytest.raises(ConfigError) as caught:
        load_settings(Settings, upstreams={"local": {"url": "http://e:8001", "api_key_env": KEY_ENV}})
    assert any("api_key_env is for `kind: openai`" in problem for problem in caught.value.problems)


async def test_a_provider_gets_the_gateway_key_its_own_model_name_and_is_probed_at_v1_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-provider")
    seen: list[httpx.Request] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "provider-model"}, {"id": "gpt-x"}]})
        return streaming([*sse(chunk("p", "hi", finish="stop")), DONE])(request)

    def local(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        raise httpx.ConnectError("connection refused")

    pool, client = routed({"local": local, "ext": provider}, {"ext": external(api_key_env=KEY_ENV)})
    dispatcher = make_dispatcher(pool)
    ext = pool.members["ext"].upstream
    assert isinstance(ext, ProviderUpstream)
    async with client:
        attempt = await dispatcher.open_stream(
            CHAT, b'{"model":"chat"}', {"x-request-id": "r1"}, dispatcher.plan("chat"), Deadline(30)
        )
        assert attempt.member.name == "ext"
        await attempt.close()
        completion = seen[-1]
        assert completion.headers["authorization"] == "Bearer sk-provider"
        assert orjson.loads(completion.content)["model"] == "provider-model"

        assert await ext.is_healthy(1) and seen[-1].url.path == "/v1/models"
        assert seen[-1].headers["authorization"] == "Bearer sk-provider"
        calls = len(seen)
        assert await ext.count_tokens("provider-model", "some text", 1) is None
        assert len(seen) == calls  # no /tokenize on a provider

        # The provider's catalogue is not the gateway's: only what is routed to it is listed, and
        # an unconfigured model never goes there.
        cards = {card["id"]: card for card in await pool.list_models(1)}
        assert set(cards) == {"tiny", "chat", "chat-ext"}
        assert cards["chat-ext"]["created"] == 0  # a whole card, though no upstream listed it
        assert [member.name for member in pool.members_for("gpt-x")] == ["local"]
    assert pool.snapshot()["ext"]["kind"] == "openai"


async def test_a_refused_provider_key_is_a_server_error_and_opens_the_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    refused = {"error": {"message": "Invalid API key", "type": "auth_error", "code": "invalid_api_key"}}
    pool, client = routed(
        {
            "local": lambda request: httpx.Response(503),
            "ext": lambda request: httpx.Response(401, json=refused),
        },
        {"ext": external(api_key_env=KEY_ENV)},
    )
    dispatcher = make_dispatcher(pool, attempts=2)  # the second failure opens the breaker
    async with client:
        with pytest.raises(UpstreamAuthFailed) as caught:
            await dispatcher.complete(CHAT, b'{"model":"chat"}', {}, dispatcher.plan("chat"), Deadline(30))
    assert caught.value.status == 502 and caught.value.body()["error"]["code"] == "upstream_auth_failed"
    assert "Invalid API key" not in caught.value.message  # the provider's words about our key stay here
    assert pool.members["ext"].breaker.state == "open"  # breaker_failures=2 in make_pool

    # A LiteLLM proxy without a database says the same with a 400 of its own type.
    no_db = {"error": {"message": "No connected db.", "type": "no_db_connection", "code": "400"}}
    pool, client = routed(
        {"local": refusing, "ext": lambda request: httpx.Response(400, json=no_db)},
        {"ext": external(api_key_env=KEY_ENV)},
    )
    dispatcher = make_dispatcher(pool, attempts=1)
    async with client:
        with pytest.raises(UpstreamAuthFailed):
            await dispatcher.complete(CHAT, b'{"model":"chat"}', {}, dispatcher.plan("chat"), Deadline(30))
    assert pool.members["ext"].breaker.consecutive_failures == 1


async def test_a_reload_rebuilds_an_upstream_whose_kind_or_key_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-one")
    pool, client = make_pool({"ext": lambda request: httpx.Response(200)})
    urls = {"ext": "http://ext"}
    pool.reconfigure(urls, {"ext": external(api_key_env=KEY_ENV)}, {})
    first = pool.members["ext"]
    pool.reconfigure(urls, {"ext": external(api_key_env=KEY_ENV, max_outstanding=4)}, {})
    assert pool.members["ext"] is first and first.max_outstanding == 4
    monkeypatch.setenv(KEY_ENV, "sk-two")  # a rotated key is picked up by the next reload
    pool.reconfigure(urls, {"ext": external(api_key_env=KEY_ENV)}, {})
    rotated = pool.members["ext"]
    assert rotated is not first and rotated.upstream.same_as(UpstreamSpec("openai", "http://ext", "sk-two"))
    pool.reconfigure(urls, {"ext": UpstreamConfig.model_validate({"url": "http://ext"})}, {})
    assert pool.members["ext"].upstream.kind == "vllm"
    await client.aclose()


async def test_readiness_is_about_local_engines_only() -> None:
    pool, client = make_pool({"ext": lambda request: httpx.Response(500)})
    pool.reconfigure({"ext": "http://ext"}, {"ext": external()}, {})  # a provider only
    engine_pool, engine_client = make_pool({"local": lambda request: httpx.Response(500)})
    async with client, engine_client:
        providers_only = HealthMonitor(pool, HealthPolicy(interval_s=1, timeout_s=1))
        await providers_only.check_now()
        assert providers_only.report().engines_ready
        with_engine = HealthMonitor(engine_pool, HealthPolicy(interval_s=1, timeout_s=1))
        await with_engine.check_now()
        report = with_engine.report()
        # The engines' signal (/readyz?engines=1) is down; the gateway's own readiness is not.
        assert not report.engines_ready and report.ready


async def test_a_broken_stream_does_not_continue_on_a_provider() -> None:
    """A continuation uses vLLM's `continue_final_message`: a provider would refuse it, so a stream
    whose only other upstream is a provider ends with an error event and the provider is not asked."""
    payload = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    asked: list[str] = []

    def provider(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(500)

    first = sse(chunk("first", role=True), chunk("first", "Hel"), chunk("first", "lo"))
    pool, client = routed({"local": streaming(first, fail_after=3), "ext": provider}, {"ext": external()})
    dispatcher = make_dispatcher(pool)
    async with client:
        plan = dispatcher.plan("chat")
        deadline = Deadline(30)
        attempt = await dispatcher.open_stream(CHAT, orjson.dumps(payload), {}, plan, deadline)
        body = await relay_with_failover(dispatcher, attempt, payload, plan, deadline)
    assert body.endswith(DONE) and b'"error"' in body
    assert asked == []
