"""Every failure a client can cause or meet, each in OpenAI's envelope with the right status."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.helpers import envelope
from tests.servers import ThreadedServer, free_port

pytestmark = pytest.mark.engine

HELLO = [{"role": "user", "content": "hi"}]


def post(
    url: str, auth: dict[str, str], headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=60, headers={**auth, **(headers or {})}, **kwargs)


def test_malformed_json(gateway_url: str, auth: dict[str, str]) -> None:
    error = envelope(
        post(
            gateway_url,
            auth,
            content=b'{"model": "x", "messages": [',
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


def test_body_that_is_not_an_object(gateway_url: str, auth: dict[str, str]) -> None:
    assert envelope(post(gateway_url, auth, json=[1, 2]), 400)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"temperature": 9}, "temperature", "decimal_above_max_value"),
        ({"n": "many"}, "n", "invalid_type"),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        ({"messages": None}, "messages", "invalid_type"),
        ({"messages": []}, "messages", "empty_array"),
        ({"stop": ["a"] * 5}, "stop", "array_above_max_length"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ],
)
def test_bad_field_is_400_naming_param(
    gateway_url: str, auth: dict[str, str], model: str, extra: dict[str, Any], param: str, code: str
) -> None:
    error = envelope(post(gateway_url, auth, json={"model": model, "messages": HELLO, **extra}), 400)
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)


def test_error_code_reaches_the_sdk(openai_client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=model, messages=HELLO, n=0)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.param) == ("integer_below_min_value", "n")


def test_bad_completion_field(gateway_url: str, auth: dict[str, str], model: str) -> None:
    response = httpx.post(
        gateway_url + "/v1/completions",
        headers=auth,
        json={"model": model, "prompt": "x", "max_tokens": -5},
    )
    error = envelope(response, 400)
    assert (error["param"], error["code"]) == ("max_tokens", "integer_below_min_value")


def test_unknown_model(gateway_url: str, auth: dict[str, str], openai_client: openai.OpenAI) -> None:
    error = envelope(post(gateway_url, auth, json={"model": "gpt-nope", "messages": HELLO}), 404)
    assert error == {
        "message": "The model `gpt-nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.chat.completions.create(model="gpt-nope", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_context(gateway_url: str, auth: dict[str, str], model: str, stream: bool) -> None:
    long_prompt = "hello " * 5000  # about 5000 tokens against the test engine's 2048
    response = post(
        gateway_url,
        auth,
        json={"model": model, "messages": [{"role": "user", "content": long_prompt}], "stream": stream},
    )
    error = envelope(response, 400)
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"


def test_completion_budget_beyond_context(gateway_url: str, model: str, openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=model, messages=HELLO, max_completion_tokens=100_000)  # type: ignore[arg-type]
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "max_completion_tokens"


def test_unknown_route_and_method(gateway_url: str) -> None:
    error = envelope(httpx.post(gateway_url + "/v1/nothing-here", json={}), 404)
    assert error["message"] == "Invalid URL (POST /v1/nothing-here)"
    # GET /v1/chat/completions lists stored completions; GET /v1/completions has no such list.
    assert envelope(httpx.get(gateway_url + "/v1/completions"), 405)["type"] == "invalid_request_error"
    assert envelope(httpx.put(gateway_url + "/v1/chat/completions"), 405)["code"] == "method_not_allowed"


@pytest.fixture(scope="module")
def small_body_gateway(engine_url: str, gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = gateway_settings(engine_url=engine_url, max_body_bytes=2048)
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


def test_body_too_large(small_body_gateway: str, auth: dict[str, str], model: str) -> None:
    big = {"model": model, "messages": [{"role": "user", "content": "x" * 4096}]}
    error = envelope(post(small_body_gateway, auth, json=big), 413)
    assert error["code"] == "request_too_large"
    # A chunked body, with no content-length to check up front, is cut off too.
    chunks = iter([b'{"model": "m", "messages": [{"role": "user", "content": "', b"y" * 4096, b'"}]}'])
    assert envelope(post(small_body_gateway, auth, content=chunks), 413)["code"] == "request_too_large"


@pytest.fixture(scope="module")
def orphan_gateway(gateway_settings: Callable[..., Settings]) -> Iterator[str]:
    """A gateway whose engine is down: nothing listens on its engine port."""
    settings = gateway_settings(engine_url=f"http://127.0.0.1:{free_port()}", connect_timeout_s=1)
    with ThreadedServer(create_app(settings)) as server:
        yield server.url


@pytest.mark.parametrize("stream", [False, True])
def test_engine_down_is_503(orphan_gateway: str, auth: dict[str, str], stream: bool) -> None:
    answer = post(orphan_gateway, auth, json={"model": "any", "messages": HELLO, "stream": stream})
    error = envelope(answer, 503)
    assert error["type"] == "server_error"
    assert error["code"] == "engine_unavailable"
    assert int(answer.headers["retry-after"]) >= 1  # the SDKs back off and retry
    # The model list still answers with what the gateway serves itself (speech, transcription,
    # moderation), as vLLM's and LiteLLM's servers always answer it; no engine model is invented.
    models = httpx.get(orphan_gateway + "/v1/models", headers=auth)
    assert models.status_code == 200, models.text
    listed = {card["id"] for card in models.json()["data"]}
    assert "whisper-1" in listed and "any" not in listed
    # The gateway is ready (it answers these envelopes); its engines are not (issue 26, point 6).
    assert httpx.get(orphan_gateway + "/readyz").status_code == 200
    envelope(httpx.get(orphan_gateway + "/readyz?engines=1"), 503)
    assert httpx.get(orphan_gateway + "/healthz").status_code == 200


def test_engine_down_with_the_sdk(orphan_gateway: str, api_key: str) -> None:
    client = openai.OpenAI(base_url=orphan_gateway + "/v1", api_key=api_key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="any", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
