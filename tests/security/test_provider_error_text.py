"""Issue 16, point 16: an upstream provider's error text reached tenants verbatim, and with it the
operator's organisation id (`org-...`), project, billing state and URLs. A provider's (kind `openai`)
error now reaches the client in the gateway's own words with the provider's status, type and code;
the full text stays in the gateway's log. (The gateway's own vLLM engines pass theirs verbatim.)"""

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

SECRET = "org-SECRETabc123"

# What the provider answers, chosen by the request's message: (status, its error object).
_ANSWERS: dict[str, tuple[int, dict[str, object]]] = {
    "bad-param": (
        400,
        {
            "message": f"Invalid 'temperature' for {SECRET} (proj_SECRET): see https://billing/{SECRET}",
            "type": "invalid_request_error",
            "param": "temperature",
        },
    ),
    "too-long": (
        400,
        {
            "message": f"This model's maximum context length is 8192 tokens ({SECRET})",
            "type": "invalid_request_error",
            "param": f"messages of {SECRET}",
        },
    ),
    "quota": (429, {"message": f"You exceeded your current quota for {SECRET}", "type": "requests"}),
    "broken": (
        500,
        {"message": f"The server had an error processing {SECRET} req_SECRET", "type": "server_error"},
    ),
}


async def _refuse(request: Request) -> JSONResponse:
    case = (await request.json())["messages"][0]["content"]
    status, error = _ANSWERS[case]
    return JSONResponse({"error": error}, status_code=status)


@pytest.fixture(scope="module")
def provider() -> Iterator[ThreadedServer]:
    app = Starlette(routes=[Route("/v1/chat/completions", _refuse, methods=["POST"])])
    with ThreadedServer(app) as server:
        yield server


@pytest.mark.parametrize(
    ("case", "status", "kind", "code", "param"),
    [
        ("bad-param", 400, "invalid_request_error", None, "temperature"),
        ("too-long", 400, "invalid_request_error", "context_length_exceeded", None),
        ("quota", 429, "requests", "rate_limit_exceeded", None),
        ("broken", 500, "server_error", None, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_providers_error_text_never_reaches_the_tenant(
    gateway_settings: Callable[..., Settings],
    provider: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
    status: int,
    kind: str,
    code: str | None,
    param: str | None,
    stream: bool,
) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", "pk-test")
    settings = gateway_settings(
        auth_enabled=False,
        retry_attempts=1,
        upstreams={"provider": {"url": provider.url, "kind": "openai", "api_key_env": "TEST_PROVIDER_KEY"}},
        models={"hosted": {"upstreams": ["provider"]}},
    )
    payload = {"model": "hosted", "stream": stream, "messages": [{"role": "user", "content": case}]}
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/chat/completions", json=payload)
    assert answer.status_code == status
    assert "SECRET" not in answer.text and "billing" not in answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (kind, code, param)
    assert error["message"].endswith(f"(upstream status {status}).")
    assert SECRET in caplog.text  # the operator still reads the provider's own words
