"""The Messages routes' own logic against fake upstreams (the real engine and SDK are in
test_anthropic_sdk.py): the error translation, the stream's usage and error events, a stream torn
mid-way, and a model only a provider serves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from gateway import Settings, create_app
from gateway.admission.outcome import Outcome
from gateway.errors import (
    APIError,
    AuthenticationFailed,
    EngineTimeout,
    EngineUnavailable,
    InvalidRequest,
    LimiterUnavailable,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    UpstreamAuthFailed,
    anthropic_error,
)
from gateway.http.drain import Drain, DrainMiddleware
from gateway.protocol.anthropic import AnthropicMessagesRequest
from gateway.services.messages import MESSAGES, MessagesService, prompt_tokens
from gateway.services.messages_stream import MessagesRelay, MessagesUsage
from gateway.settings.sections import ModelRoute, UpstreamConfig
from gateway.upstreams.stream import UpstreamStream
from gateway.upstreams.timeouts import Deadline
from tests.resilience.test_units import Collector, make_dispatcher, make_pool, streaming
from tests.servers import ThreadedServer


def event(name: str, body: dict[str, Any]) -> bytes:
    """An event as vLLM's Anthropic server frames it."""
    return f"event: {name}\ndata: ".encode() + orjson.dumps({"type": name, **body}) + b"\n\n"


START = event(
    "message_start",
    {
        "message": {
            "id": "m1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "usage": {"input_tokens": 9, "output_tokens": 0},
        }
    },
)
BLOCK = event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
DELTAS = [
    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}) for t in "abc"
]
STOP = event("content_block_stop", {"index": 0})
FINAL = event(
    "message_delta",
    {"delta": {"stop_reason": "max_tokens"}, "usage": {"input_tokens": 9, "output_tokens": 3}},
)
END = event("message_stop", {})
STREAM = [START, BLOCK, *DELTAS, STOP, FINAL, END]


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad", param="max_tokens"), 400, "invalid_request_error"),
        (AuthenticationFailed("no key"), 401, "authentication_error"),
        (PermissionDenied("no"), 403, "permission_error"),
        (ModelNotFound("no such model", param="model"), 404, "not_found_error"),
        (PayloadTooLarge("too big"), 413, "request_too_large"),
        (RateLimited("slow down", headers={"retry-after": "7"}), 429, "rate_limit_error"),
        (QuotaExceeded("budget spent"), 429, "rate_limit_error"),
        (APIError("boom"), 500, "api_error"),
        (UpstreamAuthFailed("provider key refused"), 502, "api_error"),
        (Overloaded("every engine is full"), 503, "overloaded_error"),
        (EngineUnavailable("down"), 503, "overloaded_error"),
        (LimiterUnavailable("redis down"), 503, "overloaded_error"),
        (EngineTimeout("slow"), 504, "timeout_error"),
    ],
)
def test_every_gateway_error_in_anthropics_envelope(error: APIError, status: int, kind: str) -> None:
    response = anthropic_error(error)
    assert response.status_code == status
    body = orjson.loads(bytes(response.body))
    assert body == {"type": "error", "error": {"type": kind, "message": body["error"]["message"]}}
    assert error.message in body["error"]["message"]
    for name, value in error.headers.items():
        assert response.headers[name] == value  # Retry-After kept


def test_the_param_leads_the_message() -> None:
    body = orjson.loads(bytes(anthropic_error(InvalidRequest("Field required.", param="max_tokens")).body))
    assert body["error"]["message"] == "max_tokens: Field required."
    named = InvalidRequest("Missing required parameter: 'max_tokens'.", param="max_tokens")
    assert orjson.loads(bytes(anthropic_error(named).body))["error"]["message"] == named.message


@pytest.mark.parametrize("size", [1, 7, 50, 10_000])
def test_the_stream_passes_unchanged_and_its_usage_is_read(size: int) -> None:
    whole = b"".join(STREAM)
    usage = MessagesUsage()
    out = b"".join(usage.feed(whole[i : i + size]) for i in range(0, len(whole), size)) + usage.rest()
    assert out == whole
    assert usage.done and not usage.failed
    assert usage.usage == {"prompt_tokens": 9, "completion_tokens": 3}
    assert usage.deltas == 3


def test_cached_prompt_tokens_count_in_the_prompt() -> None:
    usage = MessagesUsage()
    cached = {"input_tokens": 2, "output_tokens": 4, "cache_read_input_tokens": 7}
    usage.feed(START + event("message_delta", {"delta": {}, "usage": cached}))
    assert usage.usage == {"prompt_tokens": 9, "completion_tokens": 4}


def test_a_cut_stream_has_no_usage_but_counts_its_tokens() -> None:
    usage = MessagesUsage()
    usage.feed(b"".join([START, BLOCK, *DELTAS[:2]]))
    assert usage.usage is None and usage.deltas == 2 and not usage.done


def test_the_engines_error_event_is_retyped() -> None:
    usage = MessagesUsage()
    vllm = event("error", {"error": {"type": "internal_error", "message": "engine died"}})
    out = usage.feed(START + vllm)
    assert usage.done and usage.failed
    last = out.split(b"\n\n")[-2]
    name, _, data = last.partition(b"\ndata: ")
    assert name == b"event: error"
    assert orjson.loads(data) == {"type": "error", "error": {"type": "api_error", "message": "engine died"}}
    overloaded = event("error", {"error": {"type": "overloaded_error", "message": "busy"}})
    assert MessagesUsage().feed(overloaded) == overloaded  # already Anthropic's: as it came


async def run(events: list[bytes], fail_after: int | None) -> tuple[bytes, list[Outcome]]:
    pool, client = make_pool({"a": streaming(events, fail_after=fail_after)})
    dispatcher = make_dispatcher(pool)
    ended: list[Outcome] = []
    async with client:
        deadline = Deadline(30)
        attempt = await dispatcher.open_stream(MESSAGES, b"{}", {}, dispatcher.plan("m"), deadline)
        stream = UpstreamStream(attempt, inter_token_s=5, deadline=deadline, failover=None)
        usage = MessagesUsage()
        relay = MessagesRelay(stream, usage=usage, on_close=ended.append)
        collector = Collector()
        await relay({"type": "http"}, collector.receive, collector.send)
    return collector.body, ended


async def test_a_whole_stream_completes() -> None:
    body, ended = await run(STREAM, None)
    assert body == b"".join(STREAM)
    assert ended == [Outcome.COMPLETED]


async def test_a_stream_torn_mid_way_ends_with_anthropics_error_event() -> None:
    """No failover for Messages: the client gets what came, then `event: error`."""
    body, ended = await run(STREAM, fail_after=4)
    assert body.startswith(b"".join(STREAM[:4]))
    name, _, data = body.split(b"\n\n")[-2].partition(b"\ndata: ")
    assert name == b"event: error"
    error = orjson.loads(data)
    assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"
    assert b"[DONE]" not in body
    assert ended == [Outcome.FAILED]


def provider_pool() -> tuple[MessagesService, httpx.AsyncClient]:
    def models(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": "tiny"}]})

    pool, client = make_pool({"local": models, "ext": models})
    pool.reconfigure(
        {"local": "http://local", "ext": "http://ext"},
        {"ext": UpstreamConfig.model_validate({"url": "http://ext", "kind": "openai"})},
        {
            "tiny": ModelRoute(upstreams=["local"], fallbacks=["gpt-x"]),
            "gpt-x": ModelRoute(upstreams=["ext"]),
        },
    )
    service = MessagesService(None, make_dispatcher(pool), None, None)  # type: ignore[arg-type]
    return service, client


async def test_a_model_only_a_provider_serves_is_a_400_naming_why() -> None:
    service, client = provider_pool()
    async with client:
        with pytest.raises(InvalidRequest) as caught:
            service._plan("gpt-x")
        assert caught.value.param == "model"
        assert "no Messages API" in caught.value.message
        # A provider fallback is left out of the chain; the vLLM server stays.
        plan = service._plan("tiny")
        assert [target.model for target in plan] == ["tiny"]
        assert [member.name for member in plan[0].members] == ["local"]


def test_the_prompt_estimate_counts_system_tools_and_blocks() -> None:
    base = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 400}]}
    plain = prompt_tokens(AnthropicMessagesRequest.model_validate(base))
    assert plain == 100 + 8
    system = prompt_tokens(
        AnthropicMessagesRequest.model_validate({**base, "system": [{"type": "text", "text": "y" * 40}]})
    )
    assert system == plain + 10
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    with_image = {
        **base,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, image]}],
    }
    assert prompt_tokens(AnthropicMessagesRequest.model_validate(with_image)) == plain + 85
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    assert prompt_tokens(AnthropicMessagesRequest.model_validate({**base, "tools": tools})) > plain


# A gateway in front of a fake engine: what reaches the engine, and its errors as the client sees them.

ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "text", "text": "hi"}],
    "model": "tantra-tiny",
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 1},
}
# What the fake engine answers, by the `metadata.user_id` of the request.
ENGINE_ERRORS = {
    "busy": httpx.Response(
        429,
        headers={"retry-after": "7"},
        json={"type": "error", "error": {"type": "TooManyRequestsError", "message": "queue full"}},
    ),
    "bad": httpx.Response(
        400, json={"type": "error", "error": {"type": "BadRequestError", "message": "bad template"}}
    ),
    "down": httpx.Response(
        503, json={"type": "error", "error": {"type": "ServiceUnavailableError", "message": "x"}}
    ),
}


@pytest.fixture(scope="module")
def fake_engine(gateway_settings: Callable[..., Settings]) -> Iterator[tuple[str, list[httpx.Request]]]:
    seen: list[httpx.Request] = []

    def engine(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "tantra-tiny", "max_model_len": 2048}]})
        seen.append(request)
        user = (orjson.loads(request.content).get("metadata") or {}).get("user_id")
        if user == "torn":  # a stream the engine breaks off after its third event
            return streaming(STREAM, fail_after=3)(request)
        return ENGINE_ERRORS.get(str(user)) or httpx.Response(200, json=ANSWER)

    settings = gateway_settings(auth_enabled=False, retry_attempts=1)
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(engine)))
    with ThreadedServer(app) as server:
        yield server.url, seen


def send(url: str, user: str | None = None, **headers: str) -> httpx.Response:
    body = b'{"model": "tantra-tiny",  "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]'
    if user is not None:
        body += b', "metadata": {"user_id": "' + user.encode() + b'"}'
    return httpx.post(url + "/v1/messages", content=body + b', "x_extra": 1}', headers=headers, timeout=30)


def test_the_clients_bytes_and_anthropics_headers_reach_the_engine(
    fake_engine: tuple[str, list[httpx.Request]],
) -> None:
    url, seen = fake_engine
    seen.clear()
    answer = send(url, None, **{"anthropic-version": "2023-06-01", "anthropic-beta": "x-2025"})
    assert answer.status_code == 200 and answer.json() == ANSWER
    [sent] = seen
    assert sent.url.path == "/v1/messages"
    assert sent.content.startswith(b'{"model": "tantra-tiny",  "max_tokens": 4')  # as written, spaces too
    assert sent.content.endswith(b'"x_extra": 1}')
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "x-2025"
    assert sent.headers["x-request-id"]
    assert "anthropic-version" not in send(url).request.headers  # none sent, none required
    assert seen[-1].headers.get("anthropic-version") is None


@pytest.mark.parametrize(
    ("user", "status", "kind"),
    [
        ("busy", 429, "rate_limit_error"),
        ("bad", 400, "invalid_request_error"),
        ("down", 503, "overloaded_error"),
    ],
)
def test_the_engines_errors_in_anthropics_envelope(
    fake_engine: tuple[str, list[httpx.Request]], user: str, status: int, kind: str
) -> None:
    url, _ = fake_engine
    answer = send(url, user)
    assert answer.status_code == status
    body = answer.json()
    assert set(body) == {"type", "error"} and body["error"]["type"] == kind
    if status == 429:
        assert answer.headers["retry-after"] == "7"  # the engine's own, kept


def test_what_fails_before_the_service_is_in_anthropics_envelope_too(
    fake_engine: tuple[str, list[httpx.Request]],
) -> None:
    url, _ = fake_engine
    wrong_method = httpx.get(url + "/v1/messages")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    assert wrong_method.json()["type"] == "error"
    unknown = httpx.post(url + "/v1/messages/batches", json={})
    assert unknown.status_code == 404
    assert unknown.json() == {"type": "error", "error": {"type": "not_found_error", "message": ANY_MESSAGE}}
    chat = httpx.put(url + "/v1/chat/completions")  # OpenAI's routes keep OpenAI's envelope
    assert set(chat.json()["error"]) == {"message", "type", "param", "code"}


async def test_a_draining_gateway_refuses_messages_in_anthropics_envelope() -> None:
    drain = Drain()
    drain.draining = True

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a draining gateway takes no new work")

    started: list[dict[str, Any]] = []
    collector = Collector()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            started.append(message)
        await collector.send(message)

    await DrainMiddleware(app, drain)({"type": "http", "path": "/v1/messages"}, collector.receive, send)
    assert started[0]["status"] == 503
    assert orjson.loads(collector.body)["error"]["type"] == "overloaded_error"
    assert (b"retry-after", b"1") in started[0]["headers"]


class _Any:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)


ANY_MESSAGE: Any = _Any()


def test_the_sdk_raises_a_stream_torn_mid_way(fake_engine: tuple[str, list[httpx.Request]]) -> None:
    url, _ = fake_engine
    with (
        anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0) as sdk,
        pytest.raises(anthropic.APIStatusError) as caught,
        sdk.messages.stream(
            model="tantra-tiny",
            max_tokens=4,
            messages=[{"role": "user", "content": "Hi"}],
            metadata={"user_id": "torn"},
        ) as stream,
    ):
        for _ in stream:
            pass
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
