"""Strict schemas of the custom resources the chart renders, for the same validation Kubernetes' own
kinds get from kubernetes-validate (issue 26's acceptance: CRDs included).

No network is available to the tests and the CRDs' published YAML is not packaged for Python, so each
schema below is the part of its CRD's openAPIV3Schema that the chart uses, written from the published
definitions (KEDA's keda.sh_scaledobjects.yaml, kubernetes-sigs/lws'
leaderworkerset.x-k8s.io_leaderworkersets.yaml, KubeRay's ray.io_rayservices.yaml, the Prometheus
Operator's monitoring.coreos.com_servicemonitors.yaml) with the same field names, types and enums, and
made strict: a field the CRD does not define under an object is refused (where the CRD has more fields
than listed here, those are simply not allowed to the chart). Every embedded pod template is checked
against Kubernetes' own PodTemplateSpec of the version asked for (kubernetes-validate's strict
definitions), so the pods of a LeaderWorkerSet or a RayService get the same checks as a Deployment's.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

_K8S = "https://kubernetes.io/api/_definitions.json#/$defs/"
OBJECT_META = {"$ref": _K8S + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
POD_TEMPLATE = {"$ref": _K8S + "io.k8s.api.core.v1.PodTemplateSpec"}
LABEL_SELECTOR = {"$ref": _K8S + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}
HPA_BEHAVIOR = {"$ref": _K8S + "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"}
INT_OR_STRING = {"type": ["integer", "string"]}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": OBJECT_META,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


_SCALE_TARGET = _object(
    {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "name": {"type": "string"},
        "envSourceContainerName": {"type": "string"},
    },
    ("name",),
)
_TRIGGER = _object(
    {
        "type": {"type": "string"},
        "name": {"type": "string"},
        "metadata": STRING_MAP,  # KEDA's trigger metadata: strings only
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": _object({"name": {"type": "string"}, "kind": {"type": "string"}}, ("name",)),
    },
    ("type", "metadata"),
)
SCALED_OBJECT = _resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    _object(
        {
            "scaleTargetRef": _SCALE_TARGET,
            "pollingInterval": {"type": "integer"},
            "cooldownPeriod": {"type": "integer"},
            "initialCooldownPeriod": {"type": "integer"},
            "idleReplicaCount": {"type": "integer"},
            "minReplicaCount": {"type": "integer"},
            "maxReplicaCount": {"type": "integer"},
            "fallback": _object(
                {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"}},
                ("failureThreshold", "replicas"),
            ),
            "advanced": _object(
                {
                    "horizontalPodAutoscalerConfig": _object(
                        {"name": {"type": "string"}, "behavior": HPA_BEHAVIOR}
                    ),
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                }
            ),
            "triggers": {"type": "array", "items": _TRIGGER, "minItems": 1},
        },
        ("scaleTargetRef", "triggers"),
    ),
)

LEADER_WORKER_SET = _resource(
    "leaderworkerset.x-k8s.io/v1",
    "LeaderWorkerSet",
    _object(
        {
            "replicas": {"type": "integer", "minimum": 0},
            "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
            "rolloutStrategy": _object(
                {
                    "type": {"enum": ["RollingUpdate"]},
                    "rollingUpdateConfiguration": _object(
                        {
                            "maxUnavailable": INT_OR_STRING,
                            "maxSurge": INT_OR_STRING,
                            "partition": {"type": "integer"},
                        }
                    ),
                }
            ),
            "networkConfig": _object({"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}}),
            "leaderWorkerTemplate": _object(
                {
                    "leaderTemplate": POD_TEMPLATE,
                    "workerTemplate": POD_TEMPLATE,
                    "size": {"type": "integer", "minimum": 1},
                    "restartPolicy": {"enum": ["RecreateGroupOnPodRestart", "Default", "None"]},
                },
                ("workerTemplate",),
            ),
        },
        ("leaderWorkerTemplate",),
    ),
)

_WORKER_GROUP = _object(
    {
        "groupName": {"type": "string"},
        "replicas": {"type": "integer"},
        "minReplicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"},
        "numOfHosts": {"type": "integer"},
        "idleTimeoutSeconds": {"type": "integer"},
        "suspend": {"type": "boolean"},
        "rayStartParams": STRING_MAP,
        "template": POD_TEMPLATE,
    },
    ("groupName", "template"),
)
RAY_SERVICE = _resource(
    "ray.io/v1",
    "RayService",
    _object(
        {
            "serveConfigV2": {"type": "string"},
            "serviceUnhealthySecondThreshold": {"type": "integer"},
            "deploymentUnhealthySecondThreshold": {"type": "integer"},
            "excludeHeadPodFromServeSvc": {"type": "boolean"},
            "upgradeStrategy": _object({"type": {"enum": ["NewCluster", "None"]}}),
            "rayClusterConfig": _object(
                {
                    "rayVersion": {"type": "string"},
                    "enableInTreeAutoscaling": {"type": "boolean"},
                    "suspend": {"type": "boolean"},
                    "headGroupSpec": _object(
                        {
                            "serviceType": {"type": "string"},
                            "enableIngress": {"type": "boolean"},
                            "rayStartParams": STRING_MAP,
                            "template": POD_TEMPLATE,
                        },
                        ("template",),
                    ),
                    "workerGroupSpecs": {"type": "array", "items": _WORKER_GROUP},
                },
                ("headGroupSpec",),
            ),
        }
    ),
)

# The Prometheus Operator's Duration: 30s, 1m30s, 0.
_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_ENDPOINT = _object(
    {
        "port": {"type": "string"},
        "targetPort": INT_OR_STRING,
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https"]},
        "interval": {
            "type": "string",
            "pattern": _DURATION,
        },
        "scrapeTimeout": {"type": "string"},
        "honorLabels": {"type": "boolean"},
    }
)
SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _object(
        {
            "selector": LABEL_SELECTOR,
            "namespaceSelector": _object(
                {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}
            ),
            "endpoints": {"type": "array", "items": _ENDPOINT},
            "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
        },
        ("selector",),
    ),
)

SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): LEADER_WORKER_SET,
    ("ray.io/v1", "RayService"): RAY_SERVICE,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}


def _definitions(version: str) -> Resource[Any]:
    """kubernetes-validate's strict definitions of the newest schema release not after `version`."""
    wanted = _minor(version)
    known = [v for v in kubernetes_validate.utils.all_versions() if _minor(v) <= wanted]
    path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{known[-1]}-local-strict"
    return Resource.from_contents(json.loads((path / "_definitions.json").read_text()))


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def validate(obj: dict[str, Any], kubernetes: str) -> None:
    """Validate any rendered object strictly: Kubernetes' kinds by kubernetes-validate, the custom
    resources by their schema above (their pod templates by Kubernetes' own). Raises
    jsonschema.ValidationError (kubernetes-validate's is a subclass)."""
    schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        kubernetes_validate.validate(obj, kubernetes, strict=True)
        return
    registry: Registry[Any] = _definitions(kubernetes) @ Registry()
    jsonschema.Draft202012Validator(schema, registry=registry).validate(obj)
