"""Issue 26, point 9: every value that changes the chart's structure, one render each, checked for
what holds whatever the values (strictly valid objects for the newest Kubernetes, Services that
select one workload, every Secret, ConfigMap and claim a pod names either rendered, made by the
hook Job, or named by the user in the values)."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy import crds
from tests.deploy.support import Manifests, labels_match, render_chart

_VALIDATED: set[str] = set()
GIVEN = {
    "gateway": {"adminKey": {"existingSecret": "admin"}},
    "postgresql": {"bundled": {"existingSecret": "pg"}},
}
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "fixed gateway count": {"gateway": {"autoscaling": {"enabled": False}, "replicas": 3}},
    "one GPU": {"engine": {"gpu": {"enabled": True}}},
    "four GPUs, tensor parallel": {"engine": {"gpu": {"enabled": True, "count": 4}}},
    "model on a chart claim": {"engine": {"model": {"storage": {"type": "pvc"}}}},
    "model on an existing claim": {
        "engine": {"model": {"storage": {"type": "pvc", "pvc": {"existingClaim": "models-rox"}}}}
    },
    "no model fetch": {"engine": {"model": {"source": ""}}},
    "external state by URL": {
        "postgresql": {"mode": "external", "external": {"url": "postgresql://u:p@db:5432/t"}},
        "redis": {"mode": "external", "external": {"url": "redis://cache:6379/0"}},
    },
    "external state from Secrets": {
        "postgresql": {"mode": "external", "external": {"existingSecret": "state"}},
        "redis": {"mode": "external", "external": {"existingSecret": "state"}},
    },
    "bundled database without a volume": {"postgresql": {"bundled": {"persistence": {"enabled": False}}}},
    "password and admin key as values": {
        "postgresql": {"bundled": {"password": "abc123"}},
        "gateway": {"adminKey": {"value": "sk-admin-" + "x" * 30}},
    },
    "every credential given, no generator": {**GIVEN, "secretGenerator": {"enabled": False}},
    "no NetworkPolicies": {"networkPolicy": {"enabled": False}},
    "Ingress with TLS": {
        "ingress": {"enabled": True, "tls": [{"hosts": ["tantra.example.com"], "secretName": "t"}]}
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
        "networkPolicy": {"metricsNamespaceSelector": {"kubernetes.io/metadata.name": "monitoring"}},
    },
    "engine disruption budget, Recreate": {
        "engine": {
            "podDisruptionBudget": {"enabled": True},
            "strategy": {"type": "Recreate", "rollingUpdate": None},
        }
    },
    "no chart ServiceAccount": {"serviceAccount": {"create": False, "name": "existing"}},
    # Issue 26, point 2 (the multi-node workloads: test_chart_scaling.py).
    "engines scaled to zero by KEDA": {"engine": {"autoscaling": {"enabled": True, "minReplicas": 0}}},
    "engines on an HPA": {"engine": {"autoscaling": {"enabled": True, "backend": "hpa"}}},
    "gateway identity and priority": {
        "gateway": {"serviceAccount": {"annotations": {"x/role": "r"}}, "priorityClassName": "high"},
        "engine": {"runtimeClassName": "nvidia", "priorityClassName": "gpu"},
    },
    "files on S3": {"gateway": {"blobs": {"backend": "s3", "s3": {"bucket": "b", "existingSecret": "s3"}}}},
    "files on a claim": {"gateway": {"blobs": {"backend": "pvc", "pvc": {"existingClaim": "rwx"}}}},
}


def _user_named(values: dict[str, Any]) -> set[str]:
    """Every name the values give for an object the user creates (Secrets, claims)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("existingSecret", "existingClaim", "secretName", "hfTokenSecret") and value:
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(values)
    return found


def _generated_keys(manifests: Manifests) -> set[str]:
    jobs = manifests.of_kind("Job")
    if not jobs:
        return set()
    command = jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    return {arg.split("=")[0] for arg in command if arg.endswith(("=hex", "=admin"))}


def _pods(manifests: Manifests) -> list[dict[str, Any]]:
    specs = [w["spec"]["template"]["spec"] for w in manifests.workloads()]
    specs += [j["spec"]["template"]["spec"] for j in manifests.of_kind("Job")]
    return specs + [p["spec"] for p in manifests.of_kind("Pod")]


def _check_references(manifests: Manifests, values: dict[str, Any]) -> None:
    user = _user_named(values)
    secrets = {s["metadata"]["name"]: set(s.get("data", {})) for s in manifests.of_kind("Secret")}
    secrets["tantra-generated"] = _generated_keys(manifests)
    config_maps = {c["metadata"]["name"] for c in manifests.of_kind("ConfigMap")}
    claims = {c["metadata"]["name"] for c in manifests.of_kind("PersistentVolumeClaim")}
    for pod in _pods(manifests):
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in user:
                    assert ref["key"] in secrets.get(ref["name"], set()), (container["name"], ref)
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in pod.get("volumes", []):
            if "secret" in volume and volume["secret"]["secretName"] not in user:
                keys = {item["key"] for item in volume["secret"].get("items", [])}
                assert keys <= secrets.get(volume["secret"]["secretName"], set()), volume
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, volume
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in claims | user, volume


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_structural_combination_renders_sound_objects(values: dict[str, Any]) -> None:
    manifests = render_chart(values)
    newest = kubernetes_validate.latest_version()
    for obj in manifests.objects:
        seen = json.dumps(obj, sort_keys=True)
        if seen not in _VALIDATED:  # each distinct object once; custom resources by tests/deploy/crds.py
            crds.validate(obj, newest)
            _VALIDATED.add(seen)
    workloads = manifests.workloads()
    for service in manifests.of_kind("Service"):
        selected = [
            w
            for w in workloads
            if labels_match(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
    _check_references(manifests, values)
    gateway = manifests.get("Deployment", "-gateway")["spec"]
    autoscaled = bool(manifests.of_kind("HorizontalPodAutoscaler"))
    assert autoscaled == ("replicas" not in gateway)
