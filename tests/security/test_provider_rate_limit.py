"""Issue 16, point 16: a provider's 429 reaches the client as a rate limit (OpenAI's `requests` /
`rate_limit_exceeded`) with the provider's Retry-After, not as `invalid_request_error` without it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.servers import ThreadedServer


async def _busy(_: Request) -> JSONResponse:
    body = {"error": {"message": "Rate limit reached for org-SECRET on requests", "type": "requests"}}
    return JSONResponse(body, status_code=429, headers={"retry-after": "7"})


@pytest.fixture(scope="module")
def busy_provider() -> Iterator[ThreadedServer]:
    app = Starlette(routes=[Route("/v1/chat/completions", _busy, methods=["POST"])])
    with ThreadedServer(app) as server:
        yield server


def test_a_providers_429_is_a_rate_limit_with_its_retry_after(
    gateway_settings: Callable[..., Settings], busy_provider: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", "pk-test")
    settings = gateway_settings(
        auth_enabled=False,
        retry_attempts=1,
        upstreams={
            "provider": {"url": busy_provider.url, "kind": "openai", "api_key_env": "TEST_PROVIDER_KEY"}
        },
        models={"hosted": {"upstreams": ["provider"]}},
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/chat/completions", json={"model": "hosted", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert answer.headers["retry-after"] == "7"
