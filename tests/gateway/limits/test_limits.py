"""Limits through the gateway, against the real engine: status, envelope and headers of every limit
case, reservations settled with the real usage, released when a request fails or its client leaves."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from gateway import Settings, create_app
from tests.gateway.helpers import AdminClient, bearer, envelope, ledger_rows, wait_for
from tests.gateway.http.test_disconnect import engine_metric, wait_until_idle
from tests.servers import ThreadedServer

pytestmark = pytest.mark.engine

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
EXACT = {"ignore_eos": True, "temperature": 0}


def chat(url: str, key: str, model: str, max_tokens: int = 4, **body: Any) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions",
        headers=bearer(key),
        json={"model": model, "messages": HELLO, "max_tokens": max_tokens, **EXACT, **body},
        timeout=120,
    )


def limited(response: httpx.Response, kind: str, code: str = "rate_limit_exceeded") -> dict[str, Any]:
    error = envelope(response, 429)
    assert (error["type"], error["code"], error["param"]) == (kind, code, None)
    return error


def new_key(
    admin: AdminClient, name: str, tenant: dict[str, Any] | None = None, **limits: Any
) -> tuple[str, str]:
    tenant = tenant or admin.tenant(name)
    secret, record = admin.key(tenant["id"], name, **limits)
    return secret, record["id"]


def test_requests_per_minute(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, _ = new_key(admin, "rpm", rpm=2)
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0)
    first = client.chat.completions.with_raw_response.create(model=model, messages=HELLO, max_tokens=2)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-limit-tokens" not in first.headers  # no token limit on this key
    assert chat(gateway_url, key, model).headers["x-ratelimit-remaining-requests"] == "0"

    response = chat(gateway_url, key, model)
    error = limited(response, "requests")
    assert "Limit 2" in error["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert 0 < int(response.headers["retry-after-ms"]) <= 60_000
    assert response.headers["x-ratelimit-limit-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"


def test_tokens_per_minute_reserve_and_settle(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, _ = new_key(admin, "tpm", tpm=5000)
    chat(gateway_url, key, model, stream=False)  # the first teaches the estimator this template
    time.sleep(0.3)
    before = chat(gateway_url, key, model)
    usage = before.json()["usage"]["total_tokens"]
    time.sleep(0.3)  # its settlement runs just after the answer
    after = chat(gateway_url, key, model)
    assert before.headers["x-ratelimit-limit-tokens"] == "5000"
    remaining_before = int(before.headers["x-ratelimit-remaining-tokens"])
    remaining_after = int(after.headers["x-ratelimit-remaining-tokens"])
    # Between the two, exactly the real usage of the first was charged: its estimate was replaced.
    assert remaining_before - remaining_after == usage


def test_tokens_limit_hit(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, _ = new_key(admin, "tpm-hit", tpm=150)
    assert chat(gateway_url, key, model, max_tokens=50).status_code == 200
    response = chat(gateway_url, key, model, max_tokens=60)
    error = limited(response, "tokens")
    assert "Limit 150" in error["message"]
    assert response.headers["x-ratelimit-limit-tokens"] == "150"
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(response.headers["retry-after"]) >= 1


def test_request_larger_than_the_limit(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, _ = new_key(admin, "too-large", tpm=100)
    response = chat(gateway_url, key, model, max_tokens=500)
    assert "Request too large" in limited(response, "tokens")["message"]
    assert response.headers["x-should-retry"] == "false"
    assert "retry-after" not in response.headers


def test_tenant_limits_bind_all_its_keys(gateway_url: str, admin: AdminClient, model: str) -> None:
    tenant = admin.tenant("shared-rpm", rpm=2)
    one, _ = new_key(admin, "one", tenant, rpm=100)
    two, _ = new_key(admin, "two", tenant)
    assert chat(gateway_url, one, model).headers["x-ratelimit-limit-requests"] == "2"  # the tighter
    assert chat(gateway_url, two, model).status_code == 200
    limited(chat(gateway_url, one, model), "requests")
    limited(chat(gateway_url, two, model), "requests")


def test_concurrency_released_by_a_client_that_leaves(
    gateway_url: str, engine_url: str, admin: AdminClient, database_url: str, model: str
) -> None:
    key, key_id = new_key(admin, "concurrent", max_concurrent=1, tpm=100_000)
    wait_until_idle(engine_url)
    generated_before = engine_metric(engine_url, "vllm:generation_tokens_total")
    # Sixteen sampled choices: one greedy answer can be generated whole before the client reads
    # its first lines (see test_disconnect), and then the slot would be free for the wrong reason.
    body = {
        "model": model,
        "messages": HELLO,
        "max_tokens": 1500,
        "stream": True,
        "n": 16,
        "seed": 0,
        "ignore_eos": True,
    }
    received = 0
    with (
        httpx.Client(base_url=gateway_url, headers=bearer(key), timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["x-ratelimit-limit-tokens"] == "100000"
        lines = stream.iter_lines()  # held: a dropped iterator would close the connection
        while received < 8:
            line = next(lines)
            if line.startswith("data: {") and '"content":""' not in line:
                received += 1
        response = chat(gateway_url, key, model)
        error = limited(response, "requests")
        assert "concurrent" in error["message"]
        assert response.headers["retry-after"] == "1"
    # The client left: the engine stops and the slot comes free.
    wait_until_idle(engine_url)
    generated = engine_metric(engine_url, "vllm:generation_tokens_total") - generated_before
    wait_for(lambda: chat(gateway_url, key, model).status_code == 200, timeout=5)
    [stream_row] = [row for row in ledger_rows(database_url, key_id, 3) if row.stream]
    assert (stream_row.status, stream_row.outcome, stream_row.stream) == (499, "client_closed", True)
    # What was generated, as far as the gateway saw it: at least what the client read.
    assert received <= stream_row.completion_tokens <= generated < 1500 * 16
    assert stream_row.prompt_tokens > 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_usage_is_settled(
    gateway_url: str, admin: AdminClient, database_url: str, model: str, include_usage: bool
) -> None:
    key, key_id = new_key(admin, f"stream-usage-{include_usage}", tpm=100_000)
    body: dict[str, Any] = {"model": model, "messages": HELLO, "max_tokens": 7, "stream": True, **EXACT}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(gateway_url + "/v1/chat/completions", headers=bearer(key), json=body, timeout=60)
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage_events = [e for e in events if '"usage"' in e and '"choices":[]' in e]
    assert len(usage_events) == (1 if include_usage else 0)
    [row] = ledger_rows(database_url, key_id, 1)
    assert (row.status, row.outcome, row.completion_tokens) == (200, "completed", 7)
    assert row.prompt_tokens > 10  # the engine's count, with the chat template
    if include_usage:
        assert f'"prompt_tokens":{row.prompt_tokens}' in usage_events[0]


def test_stream_options_of_the_client_are_kept(gateway_url: str, auth: dict[str, str], model: str) -> None:
    """Asking for usage on the client's behalf keeps its other stream options (vLLM's extra here)."""
    body = {
        "model": model,
        "messages": HELLO,
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"continuous_usage_stats": True},
        **EXACT,
    }
    response = httpx.post(gateway_url + "/v1/chat/completions", headers=auth, json=body, timeout=60)
    chunks = [line for line in response.text.splitlines() if line.startswith("data: {")]
    assert all('"usage"' in c for c in chunks if '"choices":[{' in c)  # continuous usage stayed on
    assert not any('"choices":[]' in c for c in chunks)  # the final usage event was not asked for


def test_failed_request_releases_its_tokens(
    gateway_url: str, admin: AdminClient, database_url: str, model: str
) -> None:
    key, key_id = new_key(admin, "failure", tpm=50_000)
    chat(gateway_url, key, model)  # teaches the estimator
    time.sleep(0.3)
    first = chat(gateway_url, key, model)
    used = first.json()["usage"]["total_tokens"]
    long_prompt = [{"role": "user", "content": "hello " * 3000}]
    failed = chat(gateway_url, key, model, messages=long_prompt)
    assert envelope(failed, 400)["code"] == "context_length_exceeded"
    time.sleep(0.3)
    second = chat(gateway_url, key, model)
    charged = int(first.headers["x-ratelimit-remaining-tokens"]) - int(
        second.headers["x-ratelimit-remaining-tokens"]
    )
    assert charged == used  # the failed request, reserved thousands, was charged nothing
    rows = ledger_rows(database_url, key_id, 4)
    assert [(r.status, r.outcome) for r in rows][2] == (400, "rejected")
    assert (rows[2].prompt_tokens, rows[2].completion_tokens) == (0, 0)


def test_token_budget(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, _ = new_key(admin, "budget", budget_tokens=100, budget_period="day")
    statuses = []
    for _ in range(6):
        response = chat(gateway_url, key, model, max_tokens=4)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
        time.sleep(0.2)
    assert statuses[0] == 200 and statuses[-1] == 429
    error = limited(response, "insufficient_quota", "insufficient_quota")
    assert "daily tokens budget of 100" in error["message"]
    assert response.headers["x-should-retry"] == "false"
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=3)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=4)
    assert caught.value.code == "insufficient_quota"


@pytest.fixture(scope="module")
def priced_gateway(engine_url: str, gateway_settings: Callable[..., Settings], model: str) -> Iterator[str]:
    prices = {model: {"prompt": 1000.0, "completion": 2000.0}}  # USD per million tokens: dear on purpose
    with ThreadedServer(create_app(gateway_settings(engine_url=engine_url, model_prices=prices))) as server:
        yield server.url


def test_spend_budget_and_cost_in_the_ledger(priced_gateway: str, admin: AdminClient, model: str) -> None:
    tenant = admin.tenant("spend", budget_usd=0.2, budget_period="month")
    key, key_id = new_key(admin, "spend", tenant)
    spent = 0.0
    for _ in range(10):
        response = chat(priced_gateway, key, model, max_tokens=10)
        if response.status_code == 429:
            break
        usage = response.json()["usage"]
        spent += (usage["prompt_tokens"] * 1000 + usage["completion_tokens"] * 2000) / 1e6
        time.sleep(0.2)
    error = limited(response, "insufficient_quota", "insufficient_quota")
    assert "spend (USD) budget of 0.2" in error["message"]
    assert 0 < spent <= 0.2
    [row] = admin.usage(key_id=key_id, group_by="key")
    assert row["cost_usd"] == pytest.approx(spent)


def test_usage_report_matches_what_clients_received(gateway_url: str, admin: AdminClient, model: str) -> None:
    key, key_id = new_key(admin, "report")
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=key, max_retries=0)
    prompt = completion = 0
    for max_tokens in (1, 2, 3):
        answer = client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=max_tokens, extra_body=EXACT
        )
        assert answer.usage is not None
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens
    stream = client.completions.create(
        model=model, prompt="Once upon", max_tokens=4, stream=True, extra_body=EXACT
    )
    assert all(chunk.usage is None for chunk in stream)
    completion += 4
    time.sleep(0.3)
    [total] = admin.usage(key_id=key_id, group_by="key")
    assert total["requests"] == 4
    assert total["completion_tokens"] == completion
    assert total["prompt_tokens"] > prompt  # plus the completion prompt's own tokens
    by_model_day = admin.usage(key_id=key_id, group_by="model,day")
    assert [(r["model"], r["requests"]) for r in by_model_day] == [(model, 4)]

    response = admin.http.get(
        "/admin/usage", params={"key_id": key_id, "group_by": "tenant,key,model,day", "format": "csv"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    [line] = list(csv.DictReader(io.StringIO(response.text)))
    assert line["key_id"] == key_id and line["model"] == model
    assert int(line["completion_tokens"]) == completion and int(line["requests"]) == 4
    assert list(line) == [
        "tenant_id", "key_id", "model", "day", "requests", "prompt_tokens", "completion_tokens",
        "total_tokens", "cost_usd", "avg_latency_ms", "errors", "audio_seconds", "media_requests",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def in_process_gateway(engine_url: str, gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    """A single replica without a Redis server: TANTRA_REDIS_URL=memory://."""
    settings = gateway_settings(engine_url=engine_url, redis_url="memory://")
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


def test_limits_in_process_without_redis(in_process_gateway: str, admin: AdminClient, model: str) -> None:
    """The same scripts, run in process: requests per minute, tokens per minute and their headers."""
    key, _ = new_key(admin, "in-process-rpm", rpm=2)
    assert chat(in_process_gateway, key, model).headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(in_process_gateway, key, model).status_code == 200
    response = chat(in_process_gateway, key, model)
    assert "Limit 2" in limited(response, "requests")["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60

    key, _ = new_key(admin, "in-process-tpm", tpm=100)
    response = chat(in_process_gateway, key, model, max_tokens=500)
    assert "Request too large" in limited(response, "tokens")["message"]
    assert response.headers["x-should-retry"] == "false"
    assert chat(in_process_gateway, key, model, max_tokens=4).status_code == 200
