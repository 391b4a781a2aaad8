"""The Python client's own logic against a stand-in transport (httpx.MockTransport): retries that
wait what `retry-after-ms` / `Retry-After` asked, errors carrying OpenAI's envelope, the audit
pagination iterator, admin auth, and the extension point. The real gateway: test_python_client.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tantra_client import SyncAPIResource, Tantra, TantraError, retry_after
from tantra_client._base import Call
from tantra_client.errors import NotFoundError, RateLimitError


def _envelope(message: str, kind: str, code: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Tantra:
    transport = httpx.MockTransport(handler)
    return Tantra(
        base_url="http://gateway.test",
        api_key="sk-user",
        admin_key="sk-admin",
        http_client=httpx.Client(transport=transport),
        **kwargs,
    )


def test_a_429_is_retried_after_the_wait_the_gateway_asked_for() -> None:
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            headers = {"retry-after": "1", "retry-after-ms": "400"}
            return httpx.Response(
                429, json=_envelope("Slow down.", "rate_limit_error", "rpm"), headers=headers
            )
        return httpx.Response(200, json={"object": "list", "data": []})

    tenants = _client(handler, max_retries=2).admin.tenants.list()
    assert tenants == []
    assert len(seen) == 2
    assert 0.38 <= seen[1] - seen[0] < 1.0  # retry-after-ms, not the SDK's own backoff


def test_errors_carry_the_envelope_and_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/missing"):
            return httpx.Response(404, json=_envelope("No tenant 'missing'.", "not_found_error"))
        return httpx.Response(
            429, json=_envelope("Too many.", "rate_limit_error", "rpm"), headers={"retry-after": "7"}
        )

    client = _client(handler, max_retries=0)
    with pytest.raises(NotFoundError) as missing:
        client.admin.tenants.retrieve("missing")
    assert missing.value.status_code == 404
    assert missing.value.body == {
        "message": "No tenant 'missing'.",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(RateLimitError) as limited:
        client.admin.tenants.list()
    assert isinstance(limited.value, TantraError)
    assert limited.value.code == "rpm" and limited.value.type == "rate_limit_error"
    assert retry_after(limited.value) == 7.0


def test_admin_calls_send_the_admin_key_and_the_sdk_calls_the_api_key() -> None:
    auth: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        auth[request.url.path] = request.headers["authorization"]
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": []})
        body = json.loads(request.content)
        assert body == {"name": "acme", "rpm": 5}  # only the fields given
        limits = {"rpm": 5, "budget_period": "month"}
        return httpx.Response(
            201, json={"id": "t1", "object": "tenant", "name": "acme", "disabled": False, "limits": limits}
        )

    client = _client(handler)
    tenant = client.admin.tenants.create("acme", rpm=5)
    assert tenant.limits.rpm == 5
    client.models.list()
    assert auth == {"/admin/tenants": "Bearer sk-admin", "/v1/models": "Bearer sk-user"}


def test_audit_iter_walks_every_page_with_before_id() -> None:
    events = [{"id": i, "actor": "admin", "action": "tenant.create"} for i in range(250, 0, -1)]
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        before = request.url.params.get("before_id")
        asked.append(before)
        limit = int(request.url.params["limit"])
        page = [e for e in events if before is None or int(str(e["id"])) < int(before)][:limit]
        return httpx.Response(200, json={"object": "list", "data": page})

    ids = [e.id for e in _client(handler).admin.audit.iter(page_size=100)]
    assert ids == list(range(250, 0, -1))
    assert asked == [None, "151", "51"]


def test_an_extension_resource_uses_the_same_transport() -> None:
    class Echo(SyncAPIResource):
        def ping(self) -> dict[str, object]:
            return dict(self._json(Call("get", "/v1/echo", params={"x": 1, "none": None})))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"query": str(request.url.query, "ascii")})

    client = _client(handler)
    assert client.resource(Echo) is client.resource(Echo)
    assert client.resource(Echo).ping() == {"query": "x=1"}
