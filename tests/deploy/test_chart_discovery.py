"""The chart's engine discovery (engine.discovery, issue 26 point 1): on by default, a headless
Service selecting the engine pods and the gateway's `upstreams` naming it with `discovery`, read
back by the gateway's own Settings; off, or with upstreams set by hand, neither. In `endpointslices`
mode the gateways get their own account, a Role to watch EndpointSlices and its binding, rendered
and validated strictly. The engine's CPU and CUDA builds are separate image tags (point 8)."""

from __future__ import annotations

import kubernetes_validate
import orjson
import pytest

from gateway.settings.schema import Settings
from tests.deploy import crds
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


SLICES = {"engine": {"discovery": {"mode": "endpointslices"}}}


def test_endpointslice_mode_grants_the_gateways_a_watch_and_nothing_more() -> None:
    manifests = render_chart(SLICES)
    config = manifests.get("ConfigMap", "-gateway")["data"]
    (upstream,) = Settings(upstreams=orjson.loads(config["TANTRA_UPSTREAMS"])).upstreams.values()
    headless = manifests.get("Service", "-engine-headless")["metadata"]["name"]
    assert upstream.discovery is not None and upstream.discovery.mode == "endpointslices"
    assert (upstream.discovery.service, upstream.discovery.namespace) == (headless, "llm")
    (role,) = [r for r in manifests.of_kind("Role") if r["metadata"]["name"].endswith("-endpointslices")]
    assert role["rules"] == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    (binding,) = [
        b for b in manifests.of_kind("RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    pod = manifests.get("Deployment", "-gateway")["spec"]["template"]["spec"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "llm"}
    ]
    assert pod["automountServiceAccountToken"] is True  # the token the watch authenticates with
    # The account is the gateways' own: no engine, Redis or PostgreSQL pod runs under it.
    others = [w for w in manifests.workloads() if not w["metadata"]["name"].endswith("-gateway")]
    assert all(
        w["spec"]["template"]["spec"].get("serviceAccountName") != pod["serviceAccountName"] for w in others
    )
    assert all(w["spec"]["template"]["spec"].get("automountServiceAccountToken") is not True for w in others)


def test_dns_mode_mounts_no_token_and_creates_no_role(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["default"]
    roles = manifests.of_kind("Role") + manifests.of_kind("RoleBinding")
    assert not [r for r in roles if r["metadata"]["name"].endswith("-endpointslices")]
    pod = manifests.get("Deployment", "-gateway")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("kubernetes", ["1.27", kubernetes_validate.latest_version()])
def test_endpointslice_mode_renders_valid_manifests(kubernetes: str) -> None:
    for obj in render_chart(SLICES).objects:
        crds.validate(obj, kubernetes)


def test_cpu_and_cuda_engines_are_separate_tags(rendered: dict[str, Manifests]) -> None:
    def engine_image(manifests: Manifests) -> str:
        containers = manifests.get("Deployment", "-engine")["spec"]["template"]["spec"]["containers"]
        return str(next(c for c in containers if c["name"] == "engine")["image"])

    assert engine_image(rendered["default"]).endswith("tantra-engine:0.1.0-cpu")
    assert engine_image(rendered["production"]).endswith("tantra-engine:0.1.0-cuda")
    cuda = render_chart({"engine": {"image": {"variant": "cuda"}}})
    assert engine_image(cuda) == "tantra-engine:0.1.0-cuda"
    mine = render_chart({"engine": {"image": {"tag": "nightly"}}})
    assert engine_image(mine) == "tantra-engine:nightly"
