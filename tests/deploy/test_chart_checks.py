"""Issue 26, points 4, 6 and 9: the chart is GitOps-safe (the same values render the same bytes, no
credential is random at render time, every password can come from an existing Secret), refuses
cross-field mistakes with a clear message, knows the gateway's setting names, drains its engines,
admits Prometheus where ServiceMonitors scrape, and ships a `helm test`."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from gateway.settings.schema import Settings
from tests.deploy.support import CHART, VALUES_FILES, Manifests, labels_match, load_values, render_chart

# Template functions whose output differs between two renders of the same values (or between
# `helm template`, which Argo CD and Flux run, and `helm install`, which sees the cluster).
NON_DETERMINISTIC = (
    "randAlphaNum",
    "randAlpha",
    "randNumeric",
    "randAscii",
    "randBytes",
    "uuidv4",
    "genPrivateKey",
    "genCA",
    "genSelfSignedCert",
    "now",
    "lookup",
)


def _raw(values: dict[str, Any] | None, **options: Any) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return dict(chart.render(values, name="tantra", namespace="llm", **options))


def _refusal(values: dict[str, Any]) -> str:
    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError)) as refused:
        _raw(values)
    return str(refused.value)


def _container(manifests: Manifests, kind: str, suffix: str, name: str) -> dict[str, Any]:
    spec = manifests.get(kind, suffix)["spec"]["template"]["spec"]
    (found,) = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return found


# -- point 4: GitOps-safe state ---------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_the_same_values_render_the_same_manifests(values_name: str) -> None:
    """Argo CD's check: two renders (an install and an upgrade) are byte for byte the same, so a sync
    shows no drift and the checksum annotations do not restart the gateways."""
    values = load_values(values_name)
    first = _raw(values)
    assert _raw(values) == first
    assert _raw(values, is_upgrade=True, revision=7) == first


def test_no_template_calls_a_non_deterministic_function() -> None:
    called = re.compile(r"\b(" + "|".join(NON_DETERMINISTIC) + r")\b")
    for template in sorted((CHART / "templates").rglob("*")):
        if template.suffix not in (".yaml", ".tpl", ".txt"):
            continue
        for action in re.findall(r"\{\{(.*?)\}\}", template.read_text(), flags=re.S):
            code = re.sub(r"/\*.*?\*/", "", action, flags=re.S)
            assert not called.search(code), f"{template.name}: {{{{{action.strip()}}}}}"


def test_missing_credentials_are_made_by_a_hook_job(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["default"]
    job = manifests.get("Job", "-secret-generator")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    # Its RBAC and script exist before it runs (lower hook weights).
    for kind in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap"):
        hooked = manifests.get(kind, "-secret-generator")["metadata"]["annotations"]
        assert int(hooked["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"]), kind
    main = _container(manifests, "Job", "-secret-generator", "generate")
    command = main["command"]
    assert command[command.index("--name") + 1] == "tantra-generated"
    assert command[command.index("--adopt-from") + 1] == "tantra-gateway"
    assert {"postgres-password=hex", "admin-key=admin"} <= set(command)
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["resources"]["requests"]
    script = manifests.get("ConfigMap", "-secret-generator")["data"]["generate_secrets.py"]
    assert script == (CHART / "files" / "generate_secrets.py").read_text()
    role = manifests.get("Role", "-secret-generator")
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert named and all(set(rule["verbs"]) <= {"get", "patch"} for rule in named)
    assert all(rule["resources"] == ["secrets"] for rule in role["rules"])
    # Nothing else of the chart may talk to the API server.
    for workload in manifests.workloads():
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_given_credentials_need_no_hook(rendered: dict[str, Manifests]) -> None:
    assert not rendered["production"].of_kind("Job")
    manifests = render_chart(
        {
            "gateway": {"adminKey": {"existingSecret": "admin", "existingSecretKey": "key"}},
            "postgresql": {"bundled": {"existingSecret": "pg", "existingSecretKey": "password"}},
        }
    )
    assert not manifests.of_kind("Job") and not manifests.of_kind("Role")
    want = {"name": "pg", "key": "password"}
    gateway = {e["name"]: e for e in _container(manifests, "Deployment", "-gateway", "gateway")["env"]}
    assert gateway["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == want
    postgres = _container(manifests, "StatefulSet", "-postgresql", "postgresql")
    (password,) = [e for e in postgres["env"] if e["name"] == "POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == want
    # The chart's own Secret holds neither.
    assert set(manifests.get("Secret", "-gateway")["data"]) == {"redis-url"}


def test_a_password_given_as_a_value_is_kept_in_the_charts_secret() -> None:
    manifests = render_chart({"postgresql": {"bundled": {"password": "s3cret"}}})
    command = _container(manifests, "Job", "-secret-generator", "generate")["command"]
    assert "admin-key=admin" in command and "postgres-password=hex" not in command
    postgres = _container(manifests, "StatefulSet", "-postgresql", "postgresql")
    (password,) = [e for e in postgres["env"] if e["name"] == "POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "tantra-gateway", "key": "postgres-password"}


def test_without_the_generator_every_credential_must_be_given() -> None:
    message = _refusal({"secretGenerator": {"enabled": False}})
    assert "admin-key and postgres-password" in message and "existingSecret" in message


# -- point 9: cross-field checks and the gateway's setting names ------------------------------------

CROSS_FIELD = {
    "autoscaling minimum above maximum": (
        {"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}},
        "gateway.autoscaling.minReplicas (5) is above maxReplicas (3)",
    ),
    "disruption budget as large as the replicas": (
        {"gateway": {"podDisruptionBudget": {"minAvailable": 2}}},
        "gateway.podDisruptionBudget.minAvailable (2) must be below",
    ),
    "Recreate with rollingUpdate": (
        {"engine": {"strategy": {"type": "Recreate"}}},
        "type Recreate takes no rollingUpdate",
    ),
    "Ingress with no hosts": ({"ingress": {"enabled": True, "hosts": []}}, "ingress.hosts is empty"),
    "Ingress host with no paths (the schema catches it)": (
        {"ingress": {"enabled": True, "hosts": [{"host": "a.example.com", "paths": []}]}},
        "/ingress/hosts/0/paths",  # the schema's minItems
    ),
    "ServiceMonitors the NetworkPolicies would block": (
        {"metrics": {"serviceMonitor": {"enabled": True}}},
        "needs networkPolicy.metricsNamespaceSelector",
    ),
    "engine grace period shorter than its drain": (
        {"engine": {"terminationGracePeriodSeconds": 30}},
        "engine.terminationGracePeriodSeconds (30) must cover",
    ),
    "misspelt setting": (
        {"gateway": {"settings": {"log_levle": "debug", "jobs_concurency": 2}}},
        "gateway.settings: jobs_concurency, log_levle not a setting of the gateway",
    ),
}


@pytest.mark.parametrize(("values", "message"), CROSS_FIELD.values(), ids=CROSS_FIELD.keys())
def test_cross_field_mistakes_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    assert message in _refusal(values)


def test_recreate_without_rolling_update_renders() -> None:
    manifests = render_chart({"engine": {"strategy": {"type": "Recreate", "rollingUpdate": None}}})
    assert manifests.get("Deployment", "-engine")["spec"]["strategy"] == {"type": "Recreate"}


def test_the_charts_setting_names_are_the_gateways() -> None:
    listed = (CHART / "files" / "settings.txt").read_text().split()
    assert listed == sorted(Settings.model_fields), (
        "helm/tantra/files/settings.txt differs from gateway/settings/schema.py: "
        "run `python scripts/chart_settings.py`"
    )


# -- point 6 (chart side): engine drain, Prometheus through the NetworkPolicies ---------------------


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_engines_drain_before_they_stop(rendered: dict[str, Manifests], values_name: str) -> None:
    manifests = rendered[values_name]
    engine = _container(manifests, "Deployment", "-engine", "engine")
    command = engine["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "/scripts/engine_drain.py"]
    sleep, drain = (
        float(command[command.index("--sleep") + 1]),
        float(command[command.index("--timeout") + 1]),
    )
    pod = manifests.get("Deployment", "-engine")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= sleep + drain + 10
    assert {"name": "scripts", "mountPath": "/scripts", "readOnly": True} in engine["volumeMounts"]
    scripts = manifests.get("ConfigMap", "-scripts")["data"]
    assert scripts["engine_drain.py"] == (CHART / "files" / "engine_drain.py").read_text()
    port = engine["ports"][0]["containerPort"]
    assert command[command.index("--url") + 1] == f"http://127.0.0.1:{port}"


def test_prometheus_namespace_reaches_what_the_service_monitors_scrape(
    rendered: dict[str, Manifests],
) -> None:
    manifests = rendered["production"]
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    for monitor in manifests.of_kind("ServiceMonitor"):
        component = monitor["metadata"]["name"].rsplit("-", 1)[1]
        (port,) = [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]]
        policy = manifests.get("NetworkPolicy", f"-{component}")["spec"]
        admitted = [
            rule
            for rule in policy["ingress"]
            if any(
                peer.get("namespaceSelector", {}).get("matchLabels") == monitoring
                for peer in rule.get("from", [])
            )
        ]
        assert any(port in {p["port"] for p in rule["ports"]} for rule in admitted), component


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_the_model_fetch_has_its_own_resources(rendered: dict[str, Manifests], values_name: str) -> None:
    init = _container(rendered[values_name], "Deployment", "-engine", "fetch-model")
    assert {"cpu", "memory"} <= set(init["resources"]["requests"]) and init["resources"]["limits"]["memory"]


# -- point 9: helm test ---------------------------------------------------------------------------


@pytest.mark.parametrize("values_name", sorted(VALUES_FILES))
def test_helm_test_calls_the_gateway(rendered: dict[str, Manifests], values_name: str) -> None:
    manifests = rendered[values_name]
    (pod,) = manifests.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (main,) = pod["spec"]["containers"]
    command = main["command"]
    assert command[:2] == ["python", "/scripts/smoke_test.py"]
    service = manifests.get("Service", "-gateway")
    api = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert command[command.index("--api") + 1] == api == command[command.index("--admin") + 1]
    model = manifests.get("Deployment", "-engine")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert command[command.index("--model") + 1] == model[model.index("--served-model-name") + 1]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    secret = {v["name"]: v for v in pod["spec"]["volumes"]}["admin-key"]["secret"]["secretName"]
    gateway_pod = manifests.get("Deployment", "-gateway")["spec"]["template"]["spec"]
    assert secret == {v["name"]: v for v in gateway_pod["volumes"]}["admin-key"]["secret"]["secretName"]


def test_helm_test_reaches_admin_on_the_operator_port_when_it_is_there() -> None:
    manifests = render_chart({"gateway": {"settings": {"admin_listener": "operator"}}})
    (pod,) = manifests.of_kind("Pod")
    command = pod["spec"]["containers"][0]["command"]
    assert command[command.index("--admin") + 1] == "http://tantra-gateway-operator:9090"
    policy = manifests.get("NetworkPolicy", "-gateway")["spec"]
    assert any(
        labels_match(peer["podSelector"]["matchLabels"], pod["metadata"]["labels"])
        for rule in policy["ingress"]
        for peer in rule.get("from", [])
        if "podSelector" in peer and {"port": "operator", "protocol": "TCP"} in rule["ports"]
    )


# -- point 7: the cloud values files ----------------------------------------------------------------

CLOUDS = {
    # values file: (GPU node selector key, ingress class, a storage class for the model)
    "eks": ("eks.amazonaws.com/nodegroup", "alb", "efs-sc"),
    "gke": ("cloud.google.com/gke-accelerator", "gce", "standard-rwx"),
    "aks": ("kubernetes.azure.com/agentpool", "webapprouting.kubernetes.azure.com", "azurefile-csi-premium"),
}


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_cloud_values_place_engines_on_gpu_nodes(rendered: dict[str, Manifests], cloud: str) -> None:
    """The strict schema validation for Kubernetes 1.27 and the newest runs on these files in
    test_chart.py (VALUES_FILES); this checks what makes each one that cloud's."""
    selector, ingress_class, storage_class = CLOUDS[cloud]
    manifests = rendered[cloud]
    pod = manifests.get("Deployment", "-engine")["spec"]["template"]["spec"]
    assert selector in pod["nodeSelector"]
    assert any(t["effect"] == "NoSchedule" for t in pod["tolerations"])
    assert pod["priorityClassName"] == "tantra-gpu"
    assert pod.get("runtimeClassName") == (None if cloud == "gke" else "nvidia")
    engine = _container(manifests, "Deployment", "-engine", "engine")
    assert int(engine["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    claim = manifests.get("PersistentVolumeClaim", "-models")["spec"]
    assert claim["storageClassName"] == storage_class and claim["accessModes"] == ["ReadWriteMany"]
    assert manifests.get("Ingress", "-gateway")["spec"]["ingressClassName"] == ingress_class
    # Managed databases, given credentials: no hook Job, nothing generated.
    assert not manifests.of_kind("Job") and not manifests.of_kind("StatefulSet")


def test_eks_gives_the_s3_role_to_the_gateways_only(rendered: dict[str, Manifests]) -> None:
    manifests = rendered["eks"]
    accounts = {a["metadata"]["name"]: a for a in manifests.of_kind("ServiceAccount")}
    gateway = manifests.get("Deployment", "-gateway")["spec"]["template"]["spec"]
    account = accounts[gateway["serviceAccountName"]]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert account["automountServiceAccountToken"] is False
    engine = manifests.get("Deployment", "-engine")["spec"]["template"]["spec"]
    assert engine["serviceAccountName"] != gateway["serviceAccountName"]
    assert "annotations" not in accounts[engine["serviceAccountName"]]["metadata"]
    config = manifests.get("ConfigMap", "-gateway")["data"]
    assert config["TANTRA_BLOB_BACKEND"] == "s3"
    env = {e["name"] for e in _container(manifests, "Deployment", "-gateway", "gateway")["env"]}
    assert "TANTRA_BLOB_S3_ACCESS_KEY_ID" not in env  # the role's credentials, not keys
