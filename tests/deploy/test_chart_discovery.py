"""The chart's engine discovery (engine.discovery, issue 26 point 1): on by default, a headless
Service selecting the engine pods and the gateway's `upstreams` naming it with `discovery`, read
back by the gateway's own Settings; off, or with upstreams set by hand, neither."""

from __future__ import annotations

import orjson

from gateway.settings.schema import Settings
from tests.deploy.support import Manifests, render_chart


def test_default_discovers_engine_pods_through_a_headless_service(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["default"]
    headless = manifests.get("Service", "-engine-headless")
    engine = manifests.get("Service", "-engine")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is False
    assert headless["spec"]["selector"] == engine["spec"]["selector"]
    config = manifests.get("ConfigMap", "-gateway")["data"]
    settings = Settings(upstreams=orjson.loads(config["TANTRA_UPSTREAMS"]))
    (upstream,) = settings.upstreams.values()
    name = headless["metadata"]["name"]
    port = headless["spec"]["ports"][0]["port"]
    assert str(upstream.url).rstrip("/") == f"http://{name}.llm.svc:{port}"
    assert upstream.discovery is not None and upstream.discovery.interval_s == 5


def test_discovery_off_or_upstreams_by_hand() -> None:
    off = render_chart({"engine": {"discovery": {"enabled": False}}})
    assert not [s for s in off.of_kind("Service") if s["metadata"]["name"].endswith("-engine-headless")]
    assert "TANTRA_UPSTREAMS" not in off.get("ConfigMap", "-gateway")["data"]
    mine = {"a": {"url": "http://engine-a:8001"}}
    manual = render_chart({"gateway": {"settings": {"upstreams": mine}}})
    assert orjson.loads(manual.get("ConfigMap", "-gateway")["data"]["TANTRA_UPSTREAMS"]) == mine
