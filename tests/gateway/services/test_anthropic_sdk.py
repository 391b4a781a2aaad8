"""The real `anthropic` SDK against the gateway in front of a real vLLM engine: Anthropic's Messages
API (JSON, stream, count_tokens), served by vLLM's own implementation, under the gateway's keys,
limits and ledger, with every error in Anthropic's envelope."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, ledger_rows
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine

HELLO: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Say hello."}]
# The tiny model's weights are random: `ignore_eos` (a vLLM extra, forwarded) makes counts exact;
# the SDK (2.17) has no `temperature` argument any more, so it goes in the body too.
EXACT = {"ignore_eos": True, "temperature": 0}
# Anthropic's SDK sends its version header itself; the raw requests below send it as the SDK does.
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def client(gateway_url: str, api_key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway_url, api_key=api_key, max_retries=0, timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def small_gateway(engine_url: str, gateway_settings: Callable[..., Settings]) -> Iterator[tuple[str, Any]]:
    """A gateway of its own with a 4 KiB body limit and its spans kept (same store: the session's
    key works); its URL and the span exporter."""
    spans = InMemorySpanExporter()
    settings = gateway_settings(engine_url=engine_url, max_body_bytes=4096)
    with ThreadedServer(create_app(settings, span_processor=SimpleSpanProcessor(spans))) as server:
        yield server.url, spans


def anthropic_envelope(body: Any, kind: str) -> str:
    """The message of Anthropic's envelope, after checking its shape and type."""
    assert isinstance(body, dict)
    assert set(body) == {"type", "error"}, body
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind, body
    assert "Traceback" not in body["error"]["message"]
    return str(body["error"]["message"])


def test_create_message(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(model=model, max_tokens=6, messages=HELLO, extra_body=EXACT)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id
    assert message.model == model
    [block] = message.content
    assert block.type == "text" and isinstance(block.text, str)
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 6


def test_system_prompt_counts(client: anthropic.Anthropic, model: str) -> None:
    """A system prompt reaches the chat template: the prompt grows with it, as count_tokens says.
    (Without one, Qwen's template adds its own default; two of ours are compared instead.)"""
    short, long = "Be brief.", "Be brief. " + "Answer in one word, in English, without punctuation. " * 4
    brief = client.messages.create(model=model, max_tokens=1, messages=HELLO, system=short, extra_body=EXACT)
    wordy = client.messages.create(model=model, max_tokens=1, messages=HELLO, system=long, extra_body=EXACT)
    assert wordy.usage.input_tokens > brief.usage.input_tokens + 20
    counted = client.messages.count_tokens(model=model, messages=HELLO, system=long)
    assert counted.input_tokens == wordy.usage.input_tokens
    blocks = client.messages.count_tokens(
        model=model, messages=HELLO, system=[{"type": "text", "text": long}]
    )
    assert blocks.input_tokens == counted.input_tokens


def test_tools_declared(client: anthropic.Anthropic, model: str) -> None:
    tools: list[anthropic.types.ToolParam] = [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    without = client.messages.count_tokens(model=model, messages=HELLO)
    counted = client.messages.count_tokens(model=model, messages=HELLO, tools=tools)
    assert counted.input_tokens > without.input_tokens  # the template renders the tool list
    message = client.messages.create(
        model=model, max_tokens=4, messages=HELLO, tools=tools, tool_choice={"type": "auto"}, extra_body=EXACT
    )
    assert message.usage.input_tokens == counted.input_tokens
    assert message.stop_reason in ("max_tokens", "tool_use", "end_turn")


def test_stream(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(model=model, max_tokens=8, messages=HELLO, extra_body=EXACT) as stream:
        events = list(stream)
        final = stream.get_final_message()
    names = [event.type for event in events]
    for name in ("message_start", "content_block_start", "content_block_delta", "content_block_stop"):
        assert name in names, names
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    deltas = "".join(
        event.delta.text
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )
    assert final.content[0].type == "text"
    assert final.content[0].text == deltas
    assert final.usage.output_tokens == 8
    assert final.usage.input_tokens > 0
    assert final.stop_reason == "max_tokens"
    whole = client.messages.create(model=model, max_tokens=8, messages=HELLO, extra_body=EXACT)
    assert whole.content[0].type == "text" and whole.content[0].text == deltas


def test_ledger_rows(gateway_url: str, admin: AdminClient, database_url: str, model: str) -> None:
    tenant = admin.tenant("anthropic-ledger")
    key, record = admin.key(tenant["id"], "anthropic-ledger")
    with anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0, timeout=120) as sdk:
        message = sdk.messages.create(model=model, max_tokens=5, messages=HELLO, extra_body=EXACT)
        with sdk.messages.stream(model=model, max_tokens=3, messages=HELLO, extra_body=EXACT) as stream:
            streamed = stream.get_final_message()
        counted = sdk.messages.count_tokens(model=model, messages=HELLO)
    rows = {(row.endpoint, row.stream): row for row in ledger_rows(database_url, record["id"], 3)}
    json_row = rows[("/v1/messages", False)]
    assert (json_row.model, json_row.status, json_row.outcome) == (model, 200, "completed")
    assert (json_row.prompt_tokens, json_row.completion_tokens) == (message.usage.input_tokens, 5)
    stream_row = rows[("/v1/messages", True)]
    assert (stream_row.prompt_tokens, stream_row.completion_tokens) == (streamed.usage.input_tokens, 3)
    assert stream_row.outcome == "completed"
    count_row = rows[("/v1/messages/count_tokens", False)]
    assert count_row.status == 200 and counted.input_tokens > 0
    # Counting generates nothing and charges no tokens (RPM only).
    assert (count_row.prompt_tokens, count_row.completion_tokens) == (0, 0)


def test_same_model_name_as_models_list(client: anthropic.Anthropic, gateway_url: str, api_key: str) -> None:
    listed = httpx.get(gateway_url + "/v1/models", headers={"x-api-key": api_key}).json()["data"]
    name = listed[0]["id"]
    assert client.messages.create(model=name, max_tokens=1, messages=HELLO).model == name


def test_version_header_optional_and_bearer_accepted(gateway_url: str, api_key: str, model: str) -> None:
    """Anthropic requires `anthropic-version`; vLLM does not, and neither does the gateway."""
    body = {"model": model, "max_tokens": 2, "messages": HELLO}
    bare = httpx.post(gateway_url + "/v1/messages", json=body, headers={"x-api-key": api_key}, timeout=60)
    assert bare.status_code == 200, bare.text
    assert bare.json()["type"] == "message"
    bearer = httpx.post(
        gateway_url + "/v1/messages",
        json=body,
        headers={"authorization": f"Bearer {api_key}", "anthropic-beta": "tools-2024-04-04", **VERSION},
        timeout=60,
    )
    assert bearer.status_code == 200, bearer.text


# Errors, through the SDK: each its class, and Anthropic's body.


def test_wrong_key(gateway_url: str, model: str) -> None:
    with (
        anthropic.Anthropic(base_url=gateway_url, api_key="sk-wrong", max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        sdk.messages.create(model=model, max_tokens=1, messages=HELLO)
    assert caught.value.status_code == 401
    anthropic_envelope(caught.value.body, "authentication_error")


def test_missing_key(gateway_url: str, model: str) -> None:
    response = httpx.post(gateway_url + "/v1/messages", json={"model": model}, headers=VERSION)
    assert response.status_code == 401
    anthropic_envelope(response.json(), "authentication_error")


def test_missing_max_tokens(client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=model, messages=HELLO, max_tokens=anthropic.omit)  # type: ignore[call-overload]
    assert "max_tokens" in anthropic_envelope(caught.value.body, "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": "M", "max_tokens": 1}, "messages"),
        ({"model": "M", "max_tokens": 1, "messages": []}, "messages"),
        ({"model": "M", "max_tokens": 0, "messages": HELLO}, "max_tokens"),
        ({"model": "M", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"model": "M", "max_tokens": 1, "messages": [{"role": "user", "content": 3}]}, "content"),
        ({"model": "M", "max_tokens": 1, "messages": HELLO, "temperature": 1.5}, "temperature"),
        ({"model": "M", "max_tokens": 1, "messages": HELLO, "top_p": -0.1}, "top_p"),
        ({"model": "M", "max_tokens": 1, "messages": HELLO, "system": 5}, "system"),
        ({"model": "M", "max_tokens": 1, "messages": HELLO, "tool_choice": {"type": "tool"}}, "name"),
        ({"model": "M", "max_tokens": 1, "messages": HELLO, "tools": [{"name": "f"}]}, "input_schema"),
        ({"model": "M", "max_tokens": 1, "messages": HELLO, "stop_sequences": "x"}, "stop_sequences"),
    ],
)
def test_invalid_bodies(gateway_url: str, api_key: str, model: str, body: dict[str, Any], field: str) -> None:
    if body.get("model") == "M":
        body = {**body, "model": model}
    response = httpx.post(
        gateway_url + "/v1/messages", json=body, headers={"x-api-key": api_key, **VERSION}, timeout=60
    )
    assert response.status_code == 400, response.text
    assert field in anthropic_envelope(response.json(), "invalid_request_error")


def test_url_image_refused(gateway_url: str, api_key: str, model: str) -> None:
    """A URL source would have the engine fetch it, past the gateway's media screen."""
    image = {"type": "image", "source": {"type": "url", "url": "http://169.254.169.254/latest"}}
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": [image]}]}
    response = httpx.post(gateway_url + "/v1/messages", json=body, headers={"x-api-key": api_key}, timeout=60)
    assert response.status_code == 400
    assert "messages[0].content[0].source" in anthropic_envelope(response.json(), "invalid_request_error")


def test_unknown_model(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-no-such-model", max_tokens=1, messages=HELLO)
    assert "claude-no-such-model" in anthropic_envelope(caught.value.body, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="claude-no-such-model", messages=HELLO)


def test_model_outside_the_keys_list(gateway_url: str, admin: AdminClient, model: str) -> None:
    tenant = admin.tenant("anthropic-models")
    key, _ = admin.key(tenant["id"], "other-model-only", allowed_models=["some-other-model"])
    with (
        anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0) as sdk,
        pytest.raises(anthropic.NotFoundError) as caught,
    ):
        sdk.messages.create(model=model, max_tokens=1, messages=HELLO)
    anthropic_envelope(caught.value.body, "not_found_error")


def test_rate_limited(gateway_url: str, admin: AdminClient, database_url: str, model: str) -> None:
    tenant = admin.tenant("anthropic-rpm")
    key, record = admin.key(tenant["id"], "anthropic-rpm", rpm=2)
    refused: anthropic.RateLimitError | None = None
    with anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0, timeout=120) as sdk:
        sdk.messages.create(model=model, max_tokens=1, messages=HELLO)
        sdk.messages.count_tokens(model=model, messages=HELLO)  # RPM counts count_tokens too
        # On a loaded machine a Redis call can outlast its timeout, and the fail-open policy then
        # serves that one request unlimited: the next one meets the limit.
        sent = 2
        for _ in range(3):
            sent += 1
            try:
                sdk.messages.create(model=model, max_tokens=1, messages=HELLO)
            except anthropic.RateLimitError as exc:
                refused = exc
                break
    assert refused is not None, "no 429 over a two-requests-per-minute limit"
    assert refused.status_code == 429
    assert int(refused.response.headers["retry-after"]) >= 1
    assert refused.response.headers["x-ratelimit-limit-requests"] == "2"
    anthropic_envelope(refused.body, "rate_limit_error")
    statuses = sorted(row.status for row in ledger_rows(database_url, record["id"], sent))
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}


def test_over_tokens_per_minute(gateway_url: str, admin: AdminClient, model: str) -> None:
    """`max_tokens` is reserved against TPM before the engine is reached."""
    tenant = admin.tenant("anthropic-tpm")
    key, _ = admin.key(tenant["id"], "anthropic-tpm", tpm=100)
    with (
        anthropic.Anthropic(base_url=gateway_url, api_key=key, max_retries=0) as sdk,
        pytest.raises(anthropic.RateLimitError) as caught,
    ):
        sdk.messages.create(model=model, max_tokens=500, messages=HELLO)
    anthropic_envelope(caught.value.body, "rate_limit_error")


def test_body_too_large(small_gateway: tuple[str, Any], api_key: str, model: str) -> None:
    url, _ = small_gateway
    with (
        anthropic.Anthropic(base_url=url, api_key=api_key, max_retries=0) as sdk,
        pytest.raises(anthropic.APIStatusError) as caught,
    ):
        sdk.messages.create(model=model, max_tokens=1, messages=[{"role": "user", "content": "x" * 8192}])
    assert caught.value.status_code == 413
    anthropic_envelope(caught.value.body, "request_too_large")


def test_traced_like_chat(small_gateway: tuple[str, Any], api_key: str, model: str) -> None:
    """The request's span, its stages and the upstream call, under the client's trace."""
    url, spans = small_gateway
    trace_id, client_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{client_span}-01"}
    with (
        anthropic.Anthropic(base_url=url, api_key=api_key, max_retries=0, timeout=120) as sdk,
        sdk.messages.stream(
            model=model, max_tokens=3, messages=HELLO, extra_body=EXACT, extra_headers=headers
        ) as stream,
    ):
        stream.get_final_message()
    deadline = time.monotonic() + 5
    while True:
        by_name = {
            span.name: span
            for span in spans.get_finished_spans()
            if format(span.context.trace_id, "032x") == trace_id
        }
        if "POST /v1/messages" in by_name or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    server = by_name["POST /v1/messages"]
    assert server.parent is not None and format(server.parent.span_id, "016x") == client_span
    for child in ("auth", "preprocess", "rate_limit", "upstream"):
        assert by_name[child].parent is not None and by_name[child].parent.span_id == server.context.span_id


def test_engine_refusal_retyped(client: anthropic.Anthropic, model: str) -> None:
    """An engine's own 400 (a prompt past the model's 2048 tokens) comes back in Anthropic's shape."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=model, max_tokens=10, messages=[{"role": "user", "content": "hello " * 3000}]
        )
    anthropic_envelope(caught.value.body, "invalid_request_error")
