"""Liveness and readiness against the real engine (the engine-down case is in test_errors)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.engine


def test_healthz_and_readyz(gateway_url: str) -> None:
    assert httpx.get(gateway_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway_url + "/livez").json() == {"status": "ok"}
    ready = httpx.get(gateway_url + "/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_openapi_documents_the_routes(gateway_url: str) -> None:
    schema = httpx.get(gateway_url + "/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/healthz", "/readyz"} <= set(paths)
    chat = paths["/v1/chat/completions"]["post"]
    ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ChatCompletionRequest"
    request = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert "messages" in request["properties"]
