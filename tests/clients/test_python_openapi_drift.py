"""The Python client against the gateway's OpenAPI description (the app's own /openapi.json): every
request the client can make is a path, method and query parameters the gateway describes, and every
request body it sends has the gateway's fields. Renaming or removing a field or route in the gateway
fails here until the client follows."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest
from tantra_client import Tantra, types

from gateway import Settings, create_app


@pytest.fixture(scope="module")
def openapi(gateway_settings: Callable[..., Settings]) -> dict[str, Any]:
    return create_app(gateway_settings()).openapi()


def _every_client_request() -> list[httpx.Request]:
    """Each method of the client's Tantra resources called once, every parameter given."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        key = {"id": "k", "tenant_id": "t", "name": "", "redacted": "sk-..", "status": "active", "limits": {}}
        if request.url.path.startswith("/admin/keys/") or (
            request.url.path == "/admin/keys" and request.method == "POST"
        ):
            return httpx.Response(200, json=key)
        if request.url.path.startswith("/admin/tenants/") or request.method == "POST":
            return httpx.Response(200, json={"id": "t", "name": "n", "disabled": False, "limits": {}})
        if request.url.path == "/health/upstreams":
            return httpx.Response(200, json={"upstreams": {}, "draining": False})
        return httpx.Response(200, json={"object": "list", "group_by": [], "data": [], "status": "ok"})

    client = Tantra(
        base_url="http://gw", admin_key="a", http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    admin = client.admin
    admin.tenants.create("n", rpm=1, disabled=False)
    admin.tenants.list()
    admin.tenants.retrieve("t")
    admin.tenants.update("t", name="m", disabled=True, tpm=None)
    admin.keys.create("t", name="k", expires_at=None, budget_usd=1.0)
    admin.keys.list(tenant_id="t")
    admin.keys.retrieve("k")
    admin.keys.update("k", name="j", expires_at=None)
    admin.keys.rotate("k", grace_seconds=5)
    admin.keys.revoke("k")
    admin.usage(
        group_by=["tenant"],
        start=date(2026, 1, 1),
        end=date(2026, 2, 1),
        tenant_id="t",
        key_id="k",
        model="m",
        served_model="s",
    )
    admin.usage_csv(group_by=["day"])
    admin.audit.list(limit=5, before_id=9, target_id="t")
    admin.status()
    client.health.upstreams()
    client.health.live()
    return sent


def _operation(openapi: dict[str, Any], request: httpx.Request) -> dict[str, Any]:
    for template, operations in openapi["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, request.url.path) and request.method.lower() in operations:
            return dict(operations[request.method.lower()])
    raise AssertionError(f"{request.method} {request.url.path}: the gateway describes no such route")


def test_every_client_request_is_a_route_with_those_parameters(openapi: dict[str, Any]) -> None:
    requests = _every_client_request()
    assert len(requests) == 16
    for request in requests:
        operation = _operation(openapi, request)
        described = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        sent = set(request.url.params.keys())
        assert sent <= described, f"{request.method} {request.url.path}: {sent - described} undescribed"


@pytest.mark.parametrize(
    "model", [types.TenantCreate, types.TenantUpdate, types.KeyCreate, types.KeyUpdate, types.KeyRotate]
)
def test_request_bodies_have_the_gateways_fields(openapi: dict[str, Any], model: type[Any]) -> None:
    schema = openapi["components"]["schemas"][model.__name__]
    assert set(model.model_fields) == set(schema["properties"]), model.__name__
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required == set(schema.get("required", [])), model.__name__
