"""Issue 16, point 11: the operator endpoints are not public. With the shipped default (an operator
port, TANTRA_OPERATOR_PORT=9090), the API port behind the proxy answers /metrics, /metrics/engines,
/health/upstreams and /debug/profile with the 404 of an unknown URL, and /readyz with a bare status;
the operator port serves them (and nothing of /v1). The engines' federated metrics are scraped once
per cache period, however often they are asked for.

Starlette's TestClient puts the URL's port in `scope["server"]`, as uvicorn puts the port a
connection arrived on, so one app is probed on both listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway import Settings, create_app
from tests.security.fake_engine import FakeEngine
from tests.servers import ThreadedServer

OPERATOR = "http://testserver:9090"
OPERATOR_ONLY = ["/metrics", "/metrics/engines", "/health/upstreams"]


@pytest.fixture
def engine() -> Iterator[tuple[FakeEngine, str]]:
    fake = FakeEngine()
    with ThreadedServer(fake.app) as server:
        yield fake, server.url


def operator_settings(make: Callable[..., Settings], engine_url: str, **overrides: Any) -> Settings:
    # The shipped default (the suite's fixture turns the operator port off).
    values = {
        "operator_port": 9090,
        "engine_url": engine_url,
        "profiling_enabled": True,
    }
    return make(**{**values, **overrides})


def test_the_shipped_default_is_a_separate_operator_port() -> None:
    assert Settings.model_fields.get("operator_port") is not None, "no operator port setting"
    assert Settings.model_fields["operator_port"].default == 9090


def test_operator_routes_answer_only_on_the_operator_port(
    gateway_settings: Callable[..., Settings], engine: tuple[FakeEngine, str]
) -> None:
    _, engine_url = engine
    app = create_app(operator_settings(gateway_settings, engine_url))
    with TestClient(app) as client:
        for path in [*OPERATOR_ONLY, "/debug/profile"]:
            public = client.get(path)
            assert public.status_code == 404, f"{path} answered {public.status_code} on the API port"
            assert public.json()["error"]["message"] == f"Invalid URL (GET {path})"
        assert client.get("/livez").status_code == 200
        for path in OPERATOR_ONLY:
            assert client.get(OPERATOR + path).status_code == 200, path
        # The operator port is not a second way into the API.
        assert client.get(OPERATOR + "/v1/models").status_code == 404


def test_readyz_tells_the_public_port_only_its_status(
    gateway_settings: Callable[..., Settings], engine: tuple[FakeEngine, str]
) -> None:
    _, engine_url = engine
    # An upstream that is down: its name and the failure's reason are the operator's to read.
    down = "http://127.0.0.1:9"
    app = create_app(
        operator_settings(gateway_settings, engine_url, upstreams={"a": {"url": down}}, models={})
    )
    with TestClient(app) as client:
        public = client.get("/readyz?engines=1")
        detailed = client.get(OPERATOR + "/readyz?engines=1")
    assert public.status_code == detailed.status_code == 503
    assert "ConnectError" in detailed.text
    assert "ConnectError" not in public.text
    assert public.json()["error"]["message"] == "Not ready."


def test_engine_metrics_are_scraped_once_per_cache_period(
    gateway_settings: Callable[..., Settings], engine: tuple[FakeEngine, str]
) -> None:
    fake, engine_url = engine
    app = create_app(operator_settings(gateway_settings, engine_url, engine_metrics_cache_s=60))
    with TestClient(app) as client:
        before = fake.scrapes
        bodies = [client.get(OPERATOR + "/metrics/engines") for _ in range(5)]
    assert all(body.status_code == 200 for body in bodies)
    assert "vllm:num_requests_running" in bodies[0].text
    assert fake.scrapes - before == 1


def test_the_admin_api_can_be_served_on_the_operator_port_only(
    gateway_settings: Callable[..., Settings], engine: tuple[FakeEngine, str], admin_key: str
) -> None:
    _, engine_url = engine
    app = create_app(operator_settings(gateway_settings, engine_url, admin_listener="operator"))
    admin = {"authorization": f"Bearer {admin_key}"}
    with TestClient(app) as client:
        assert client.get("/admin/tenants", headers=admin).status_code == 404
        assert client.get(OPERATOR + "/admin/tenants", headers=admin).status_code == 200
