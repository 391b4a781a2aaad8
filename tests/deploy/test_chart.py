"""The Helm chart: it lints, renders for every values file into objects Kubernetes accepts, and those
objects carry what running Tantra safely needs (probes on real endpoints, non-root pods, resource
requests, a grace period that covers the gateway's drain, an engine reachable from gateways only).
Invalid values are refused by values.schema.json before anything renders."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.settings.schema import Settings
from tests.deploy import crds
from tests.deploy.support import (
    CHART,
    DASHBOARD_FILE,
    ENGINE_HEALTH,
    GATEWAY_LIVENESS,
    GATEWAY_READINESS,
    Manifests,
    check_engine_arguments,
    gateway_drain_seconds,
    labels_match,
    load_values,
    merged_values,
    setting_name,
)

# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest with schemas.
KUBERNETES_VERSIONS = ["1.27", kubernetes_validate.latest_version()]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(manifests: Manifests, component: str) -> dict[str, Any]:
    workload = manifests.get("Deployment", f"-{component}")
    (main,) = [c for c in pod_spec(workload)["containers"] if c["name"] == component]
    return main


def test_chart_lints_without_findings(values_name: str) -> None:
    report = helm.lint(CHART, load_values(values_name), strict=True, kube_version="v1.27.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, json.dumps(problems, indent=2)


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_rendered_objects_match_kubernetes_schemas(manifests: Manifests, kubernetes: str) -> None:
    # strict: an unknown field is an error too (a typo would otherwise be dropped silently). Custom
    # resources (ServiceMonitor) against their CRD's schema (tests/deploy/crds.py).
    checked = 0
    for obj in manifests.objects:
        try:
            crds.validate(obj, kubernetes)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")
        checked += 1
    assert checked >= 8


def test_default_install_renders_the_whole_stack(manifests: Manifests, values_name: str) -> None:
    kinds = {obj["kind"] for obj in manifests.objects}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert "NetworkPolicy" in kinds
    if values_name == "default":
        # Redis and PostgreSQL inside the release; the tiny model built by the init step.
        assert manifests.get("Deployment", "-redis")
        assert manifests.get("StatefulSet", "-postgresql")
        assert "Ingress" not in kinds and "ServiceMonitor" not in kinds
    else:
        # External state, TLS ingress, monitoring, the model on a claim.
        assert not any(o["metadata"]["name"].endswith(("-redis", "-postgresql")) for o in manifests.objects)
        assert {"Ingress", "ServiceMonitor", "PersistentVolumeClaim"} <= kinds


INVALID_VALUES = {
    "unknown top-level key": ({"gatewy": {"replicas": 2}}, "gatewy"),
    "zero gateway replicas": ({"gateway": {"replicas": 0}}, "/gateway/replicas"),
    "gpu flag as a string": ({"engine": {"gpu": {"enabled": "yes"}}}, "/engine/gpu/enabled"),
    "unknown storage type": (
        {"engine": {"model": {"storage": {"type": "hostPath"}}}},
        "/engine/model/storage/type",
    ),
    "model source of no known kind": (
        {"engine": {"model": {"source": "s3:/bucket"}}},
        "/engine/model/source",
    ),
    "resources without requests": ({"gateway": {"resources": {"requests": None}}}, "/gateway/resources"),
    "bad quantity": ({"engine": {"resources": {"requests": {"memory": "lots"}}}}, "/engine/resources"),
    "drain shorter than the gateway's": ({"gateway": {"shutdown": {"drainSeconds": 5}}}, "drainSeconds"),
    "running as root": ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    "setting the chart owns": ({"gateway": {"settings": {"engine_url": "http://x"}}}, "engine_url"),
    "external database without a URL": ({"postgresql": {"mode": "external"}}, "/postgresql/external"),
    "external database URL of another kind": (
        {"postgresql": {"mode": "external", "external": {"url": "mysql://db/tantra"}}},
        "/postgresql/external",
    ),
}


@pytest.mark.parametrize(("values", "where"), INVALID_VALUES.values(), ids=INVALID_VALUES.keys())
def test_schema_refuses_invalid_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as refused:
        chart.render(values, name="tantra", namespace="llm")
    assert where in str(refused.value)


def test_schema_refuses_an_invalid_values_file(tmp_path: Path) -> None:
    # As a user would hand it to `helm install -f`: a file with a few typical mistakes.
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(
        "gateway:\n  autoscaling:\n    enabled: true\n    minReplicas: 2\n    maxReplicas: ten\n"
        "engine:\n  kvCacheGib: 0\n  gpu:\n    enabled: true\n    count: 0\n"
    )
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as refused:
        chart.render(helm.values_from_yaml(bad.read_text()), name="tantra", namespace="llm")
    message = str(refused.value)
    for where in ("/gateway/autoscaling/maxReplicas", "/engine/kvCacheGib", "/engine/gpu/count"):
        assert where in message


def test_probes_point_at_tantra_health_endpoints(manifests: Manifests) -> None:
    gateway = container(manifests, "gateway")
    assert gateway["startupProbe"]["httpGet"]["path"] == GATEWAY_LIVENESS
    assert gateway["livenessProbe"]["httpGet"]["path"] == GATEWAY_LIVENESS
    assert gateway["readinessProbe"]["httpGet"]["path"] == GATEWAY_READINESS
    engine = container(manifests, "engine")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert engine[probe]["httpGet"]["path"] == ENGINE_HEALTH

    # The probes' named port is the port each process really listens on.
    settings = manifests.get("ConfigMap", "-gateway")["data"]
    for main, port in ((gateway, int(settings["TANTRA_PORT"])), (engine, int(_arg(engine, "--port")))):
        (http,) = [p for p in main["ports"] if p["name"] == "http"]
        assert http["containerPort"] == port
        assert all(main[p]["httpGet"]["port"] == "http" for p in ("livenessProbe", "readinessProbe"))


@pytest.mark.engine
def test_probe_paths_answer_on_a_running_gateway_and_engine(
    rendered: dict[str, Manifests], gateway_url: str, engine_url: str
) -> None:
    manifests = rendered["default"]
    for component, base in (("gateway", gateway_url), ("engine", engine_url)):
        main = container(manifests, component)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = main[probe]["httpGet"]["path"]
            assert httpx.get(base + path, timeout=10).status_code == 200, f"{component} {probe} {path}"


def _arg(main: dict[str, Any], flag: str) -> str:
    args = main["args"]
    return str(args[args.index(flag) + 1])


def test_pods_run_as_non_root_with_read_only_root_filesystems(manifests: Manifests) -> None:
    for workload in manifests.workloads():
        pod = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["automountServiceAccountToken"] is False, name
    for workload, main in manifests.containers():
        where = f"{workload['metadata']['name']}/{main['name']}"
        context = main["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"]["drop"] == ["ALL"], where


def test_every_container_requests_cpu_and_memory(manifests: Manifests, values_name: str) -> None:
    for workload, main in manifests.containers():
        if main["name"] == "fetch-model":
            continue  # an init container runs before, within the pod's requests
        requests = main["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), f"{workload['metadata']['name']}/{main['name']}"
        assert "memory" in main["resources"]["limits"], f"{workload['metadata']['name']}/{main['name']}"
    engine = container(manifests, "engine")
    gpus = engine["resources"]["limits"].get("nvidia.com/gpu")
    gpu = merged_values(values_name)["engine"]["gpu"]
    assert gpus == (gpu["count"] if gpu["enabled"] else None)


def test_gateway_grace_period_covers_its_drain(manifests: Manifests, values_name: str) -> None:
    drain = gateway_drain_seconds()
    pod = pod_spec(manifests.get("Deployment", "-gateway"))
    (pre_stop,) = [c["lifecycle"]["preStop"] for c in pod["containers"] if c["name"] == "gateway"]
    sleep = int(pre_stop["exec"]["command"][-1])
    assert pre_stop["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= sleep + drain
    assert merged_values(values_name)["gateway"]["shutdown"]["drainSeconds"] >= drain


def test_engine_arguments_are_ones_engine_serve_accepts(manifests: Manifests, tmp_path: Path) -> None:
    engine = container(manifests, "engine")
    check_engine_arguments(engine["args"], tmp_path)
    for init in pod_spec(manifests.get("Deployment", "-engine")).get("initContainers", []):
        # The init step writes exactly where the engine reads.
        assert init["command"][0] == "tantra-fetch-model"
        assert init["command"][2] == _arg(engine, "--model")


def test_production_engine_splits_the_model_over_its_gpus(rendered: dict[str, Manifests]) -> None:
    engine = container(rendered["production"], "engine")
    args = engine["args"]
    assert args[args.index("--device") + 1] == "cuda"
    vllm_args = args[args.index("--") + 1 :]
    assert vllm_args[vllm_args.index("--tensor-parallel-size") + 1] == "2"


def test_network_policy_lets_only_gateways_reach_the_engine(manifests: Manifests) -> None:
    gateway_pods = pod_labels(manifests, "Deployment", "-gateway")
    engine_pods = pod_labels(manifests, "Deployment", "-engine")
    policy = manifests.get("NetworkPolicy", "-engine")["spec"]
    assert labels_match(policy["podSelector"]["matchLabels"], engine_pods)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    for rule in policy["ingress"]:
        for peer in rule["from"]:
            if "podSelector" in peer:
                assert labels_match(peer["podSelector"]["matchLabels"], gateway_pods)
                assert not labels_match(peer["podSelector"]["matchLabels"], engine_pods)
            else:  # Prometheus's namespace, for scraping only
                assert set(peer) == {"namespaceSelector"} and peer["namespaceSelector"]["matchLabels"]
    for component in ("redis", "postgresql"):
        policies = manifests.of_kind("NetworkPolicy")
        for state in [p for p in policies if p["metadata"]["name"].endswith(component)]:
            (rule,) = state["spec"]["ingress"]
            (peer,) = rule["from"]
            assert labels_match(peer["podSelector"]["matchLabels"], gateway_pods)


def test_the_engine_reaches_nothing_but_what_a_remote_model_download_needs(
    rendered: dict[str, Manifests], values_name: str
) -> None:
    """Issue 16, point 6: a media URL smuggled to vLLM must not be a way into the cluster. A preset
    model needs no egress at all; a remote one gets DNS and public addresses on 80/443 only."""
    policy = rendered[values_name].get("NetworkPolicy", "-engine")["spec"]
    source = merged_values(values_name)["engine"]["model"]["source"]
    if not source.startswith(("hf://", "http://", "https://")):
        assert policy["egress"] == []
        return
    for rule in policy["egress"]:
        assert {port["port"] for port in rule["ports"]} <= {53, 80, 443}
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
                closed = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"}
                assert closed <= set(peer["ipBlock"]["except"])
            else:
                assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_vllm_fetches_media_from_no_domain_by_default(manifests: Manifests, values_name: str) -> None:
    """Issue 16, point 6: `engine serve` turns an empty list into a domain that never resolves."""
    domains = merged_values(values_name)["engine"]["allowedMediaDomains"]
    assert _arg(container(manifests, "engine"), "--allowed-media-domains") == ",".join(domains)
    assert domains == []


def pod_labels(manifests: Manifests, kind: str, suffix: str) -> dict[str, str]:
    return dict(manifests.get(kind, suffix)["spec"]["template"]["metadata"]["labels"])


def test_gateway_autoscaler_and_disruption_budget_target_the_gateway(manifests: Manifests) -> None:
    deployment = manifests.get("Deployment", "-gateway")
    hpa = manifests.get("HorizontalPodAutoscaler", "-gateway")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    # The HPA owns the replica count: a fixed one would be reset on every `helm upgrade`.
    assert "replicas" not in deployment["spec"]
    pdb = manifests.get("PodDisruptionBudget", "-gateway")["spec"]
    assert labels_match(pdb["selector"]["matchLabels"], pod_labels(manifests, "Deployment", "-gateway"))
    assert pdb["minAvailable"] < hpa["minReplicas"], "a budget equal to the replica count blocks node drains"


def test_services_select_pods_and_their_ports(manifests: Manifests) -> None:
    pods = {
        workload["metadata"]["name"]: (
            workload["spec"]["template"]["metadata"]["labels"],
            {p["name"] for c in pod_spec(workload)["containers"] for p in c.get("ports", [])},
        )
        for workload in manifests.workloads()
    }
    for service in manifests.of_kind("Service"):
        selector = service["spec"]["selector"]
        targets = [ports for labels, ports in pods.values() if labels_match(selector, labels)]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)} workloads"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in targets[0]


def test_gateway_reaches_the_engine_service(manifests: Manifests) -> None:
    engine_service = manifests.get("Service", "-engine")
    url = manifests.get("ConfigMap", "-gateway")["data"]["TANTRA_ENGINE_URL"]
    assert url == f"http://{engine_service['metadata']['name']}:{engine_service['spec']['ports'][0]['port']}"


def test_gateway_environment_names_real_settings(manifests: Manifests, values_name: str) -> None:
    # Every TANTRA_* variable the chart sets is a field of gateway/settings/schema.py's Settings, so a
    # renamed setting fails here instead of being ignored by the gateway in a cluster.
    fields = set(Settings.model_fields)
    gateway = container(manifests, "gateway")
    names = set(manifests.get("ConfigMap", "-gateway")["data"]) | {e["name"] for e in gateway["env"]}
    unknown = {name for name in names if name.startswith("TANTRA_") and setting_name(name) not in fields}
    assert not unknown, f"not settings of the gateway: {sorted(unknown)}"
    assert set(merged_values(values_name)["gateway"]["settings"]) <= fields
    # Credentials arrive from Secrets, never from the ConfigMap: the URLs themselves, or (the bundled
    # database) a URL Kubernetes assembles from a password taken from a Secret.
    env = {e["name"]: e for e in gateway["env"]}
    assert "valueFrom" in env["TANTRA_REDIS_URL"]
    database = env["TANTRA_DATABASE_URL"]
    assert "valueFrom" in database or (
        "$(POSTGRES_PASSWORD)" in database["value"] and "valueFrom" in env["POSTGRES_PASSWORD"]
    )
    assert not {"TANTRA_DATABASE_URL", "TANTRA_REDIS_URL"} & set(
        manifests.get("ConfigMap", "-gateway")["data"]
    )


def test_bundled_database_url_carries_the_bundled_password(rendered: dict[str, Manifests]) -> None:
    """The gateway's URL and PostgreSQL's own password come from one Secret key: the generated one
    (the hook Job's), since the default values give no password."""
    manifests = rendered["default"]
    env = {e["name"]: e for e in container(manifests, "gateway")["env"]}
    service = manifests.get("Service", "-postgresql")["metadata"]["name"]
    assert (
        env["TANTRA_DATABASE_URL"]["value"]
        == f"postgresql://tantra:$(POSTGRES_PASSWORD)@{service}:5432/tantra"
    )
    postgres = pod_spec(manifests.get("StatefulSet", "-postgresql"))["containers"][0]
    (password,) = [e for e in postgres["env"] if e["name"] == "POSTGRES_PASSWORD"]
    ref = password["valueFrom"]["secretKeyRef"]
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert ref == {"name": "tantra-generated", "key": "postgres-password"}
    data = {k: base64.b64decode(v).decode() for k, v in manifests.get("Secret", "-gateway")["data"].items()}
    assert data == {"redis-url": f"redis://{manifests.get('Service', '-redis')['metadata']['name']}:6379/0"}


def test_service_monitors_select_the_services(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["production"]
    monitors = manifests.of_kind("ServiceMonitor")
    assert {m["metadata"]["name"].rsplit("-", 1)[1] for m in monitors} == {"gateway", "engine"}
    services = manifests.of_kind("Service")
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        (service,) = [
            s for s in services if labels_match(spec["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        for endpoint in spec["endpoints"]:
            assert endpoint["path"] == "/metrics"
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_grafana_dashboard_config_map_is_the_deployed_dashboard(rendered: dict[str, Manifests]) -> None:
    (dashboard,) = [
        m for m in rendered["production"].of_kind("ConfigMap") if m["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["tantra.json"]) == json.loads(DASHBOARD_FILE.read_text())


def test_notes_tell_how_to_reach_the_api(manifests: Manifests) -> None:
    assert "/v1" in manifests.notes
    assert "admin" in manifests.notes


def test_values_file_documents_every_top_level_key() -> None:
    # values.yaml is the user's reference: every section the schema knows is in it.
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(values)
