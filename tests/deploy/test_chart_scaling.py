"""The chart's engine autoscaling and multi-node serving (issue 26, points 2 and 3): a KEDA
ScaledObject on queue depth (or an HPA through prometheus-adapter), scale to zero with the gateway's
cold-start wait, engines' preStop no shorter than discovery's interval, and a model across nodes on
a LeaderWorkerSet (Ray inside) or KubeRay's RayService. The multi-node values files lint, render, and
every object is valid under strict schemas for Kubernetes 1.27 and the newest, the custom resources
by tests/deploy/crds.py (no cluster here: what a controller does with them is not exercised)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway.observability.metrics import GatewayMetrics
from gateway.settings.schema import Settings
from tests.deploy import crds
from tests.deploy.support import (
    CHART,
    METRICS_FILE,
    Manifests,
    check_engine_arguments,
    labels_match,
    render_chart,
)

MULTINODE_FILES = {
    "multinode-lws": CHART / "ci" / "multinode-values.yaml",
    "multinode-rayservice": CHART / "ci" / "rayservice-values.yaml",
}
KUBERNETES_VERSIONS = ["1.27", kubernetes_validate.latest_version()]
KEDA_TO_ZERO = {"engine": {"autoscaling": {"enabled": True, "minReplicas": 0, "coldStartWaitSeconds": 90}}}
HPA = {"engine": {"autoscaling": {"enabled": True, "backend": "hpa", "minReplicas": 1, "maxReplicas": 3}}}


def _values(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load(MULTINODE_FILES[name].read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def multinode() -> dict[str, Manifests]:
    return {name: render_chart(_values(name)) for name in MULTINODE_FILES}


@pytest.fixture(scope="module")
def scaled() -> dict[str, Manifests]:
    return {"keda": render_chart(KEDA_TO_ZERO), "hpa": render_chart(HPA)}


def _validate_all(manifests: Manifests, kubernetes: str) -> set[str]:
    kinds = set()
    for obj in manifests.objects:
        try:
            crds.validate(obj, kubernetes)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")
        kinds.add(obj["kind"])
    return kinds


@pytest.mark.parametrize("name", sorted(MULTINODE_FILES))
def test_multinode_values_lint(name: str) -> None:
    report = helm.lint(CHART, _values(name), strict=True, kube_version="v1.27.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, json.dumps(problems, indent=2)


@pytest.mark.parametrize("kubernetes", KUBERNETES_VERSIONS)
def test_multinode_and_autoscaled_objects_match_strict_schemas(
    multinode: dict[str, Manifests], scaled: dict[str, Manifests], kubernetes: str
) -> None:
    assert {"LeaderWorkerSet", "ScaledObject", "ServiceMonitor"} <= _validate_all(
        multinode["multinode-lws"], kubernetes
    )
    assert {"RayService", "ServiceMonitor"} <= _validate_all(multinode["multinode-rayservice"], kubernetes)
    assert "ScaledObject" in _validate_all(scaled["keda"], kubernetes)
    assert _validate_all(scaled["hpa"], kubernetes) >= {"HorizontalPodAutoscaler"}


def test_the_crd_schemas_are_strict(multinode: dict[str, Manifests]) -> None:
    lws = multinode["multinode-lws"].get("LeaderWorkerSet", "-engine")
    bad_spec = {**lws, "spec": {**lws["spec"], "replica": 2}}
    template = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    bad_pod = json.loads(json.dumps(lws))
    bad_pod["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["gpus"] = 8
    for bad in (bad_spec, bad_pod):
        with pytest.raises(jsonschema.ValidationError):
            crds.validate(bad, "1.27")
    assert template["spec"]["containers"]  # the pod template is Kubernetes' own, checked as such


# -- point 2: autoscaling and scale to zero ---------------------------------------------------------


def test_keda_scales_the_engines_on_queue_depth_down_to_zero(scaled: dict[str, Manifests]) -> None:
    manifests = scaled["keda"]
    scaler = manifests.get("ScaledObject", "-engine")["spec"]
    engine = manifests.get("Deployment", "-engine")
    assert "replicas" not in engine["spec"]  # KEDA's HPA owns the count
    assert scaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": engine["metadata"]["name"],
    }
    assert scaler["minReplicaCount"] == 0
    queries = {t["name"]: t["metadata"]["query"] for t in scaler["triggers"]}
    # The metrics the triggers read exist: vLLM's (deploy/metrics.json's engine list) and the
    # gateway's own held-request gauge (its exporter), for this release's model and namespace.
    assert "vllm:num_requests_waiting" in json.loads(METRICS_FILE.read_text())["engine"]
    assert 'vllm:num_requests_waiting{namespace="llm",model_name="tantra-tiny"}' in queries["vllm-waiting"]
    gauge = GatewayMetrics(CollectorRegistry()).requests_waiting
    assert gauge._name == "tantra_requests_waiting" and gauge._labelnames == ("model",)
    assert 'tantra_requests_waiting{namespace="llm",model="tantra-tiny"}' in queries["gateway-held"]
    held = next(t for t in scaler["triggers"] if t["name"] == "gateway-held")["metadata"]
    assert held["activationThreshold"] == "0"  # one held request brings the first engine up
    # The gateways hold a request while there is no engine: the setting, as the gateway reads it.
    config = manifests.get("ConfigMap", "-gateway")["data"]
    assert Settings(cold_start_wait_s=config["TANTRA_COLD_START_WAIT_S"]).cold_start_wait_s == 90


def test_hpa_alternative_and_no_wait_above_zero(scaled: dict[str, Manifests]) -> None:
    manifests = scaled["hpa"]
    assert not manifests.of_kind("ScaledObject")
    (hpa,) = [
        h for h in manifests.of_kind("HorizontalPodAutoscaler") if h["metadata"]["name"].endswith("-engine")
    ]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    assert "TANTRA_COLD_START_WAIT_S" not in manifests.get("ConfigMap", "-gateway")["data"]


# -- point 3: multi-node groups ---------------------------------------------------------------------


def _pod_labels(template: dict[str, Any]) -> dict[str, str]:
    labels = template["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def test_lws_leader_runs_ray_head_and_vllm_and_workers_join(
    multinode: dict[str, Manifests], tmp_path: Path
) -> None:
    manifests = multinode["multinode-lws"]
    values = _values("multinode-lws")["engine"]
    lws = manifests.get("LeaderWorkerSet", "-engine")["spec"]
    group = lws["leaderWorkerTemplate"]
    assert group["size"] == values["multiNode"]["size"] and "replicas" not in lws  # KEDA owns it
    (leader,) = group["leaderTemplate"]["spec"]["containers"]
    (worker,) = group["workerTemplate"]["spec"]["containers"]
    script = leader["command"][2]
    assert "ray start --head" in script and 'exec python -m engine serve "$@"' in script
    assert "LWS_GROUP_SIZE" in script  # vLLM starts once the whole group has joined
    assert 'ray start --address="$LWS_LEADER_ADDRESS:6379" --block' in worker["command"][2]
    args = leader["args"]
    vllm = args[args.index("--") + 1 :]
    tp, pp = (
        int(vllm[vllm.index("--tensor-parallel-size") + 1]),
        int(vllm[vllm.index("--pipeline-parallel-size") + 1]),
    )
    assert vllm[vllm.index("--distributed-executor-backend") + 1] == "ray"
    gpus = [int(c["resources"]["limits"]["nvidia.com/gpu"]) for c in (leader, worker)]
    assert tp * pp == group["size"] * gpus[0] and gpus[0] == gpus[1] == 8
    check_engine_arguments(args, tmp_path)  # `engine serve` accepts them (vLLM's after `--`)
    # Discovery and the Services reach the leaders only: the workers serve no HTTP.
    for suffix in ("-engine", "-engine-headless"):
        selector = manifests.get("Service", suffix)["spec"]["selector"]
        assert labels_match(selector, _pod_labels(group["leaderTemplate"]))
        assert not labels_match(selector, _pod_labels(group["workerTemplate"]))
    # Every pod of the group fetches the model (each loads its shards) and may talk Ray to the others.
    for template in (group["leaderTemplate"], group["workerTemplate"]):
        assert [c["name"] for c in template["spec"]["initContainers"]] == ["fetch-model"]
    policy = manifests.get("NetworkPolicy", "-engine-group")["spec"]
    for template in (group["leaderTemplate"], group["workerTemplate"]):
        assert labels_match(policy["podSelector"]["matchLabels"], _pod_labels(template))
    scaler = manifests.get("ScaledObject", "-engine")["spec"]["scaleTargetRef"]
    assert scaler["kind"] == "LeaderWorkerSet"


def test_rayservice_serves_the_model_over_the_ray_cluster(multinode: dict[str, Manifests]) -> None:
    manifests = multinode["multinode-rayservice"]
    spec = manifests.get("RayService", "-engine")["spec"]
    cluster = spec["rayClusterConfig"]
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == 1  # size 2: the head and one worker
    serve = yaml.safe_load(spec["serveConfigV2"])
    (app,) = serve["applications"]
    (llm,) = app["args"]["llm_configs"]
    engine = llm["engine_kwargs"]
    head = cluster["headGroupSpec"]["template"]
    gpus = int(head["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert engine["tensor_parallel_size"] * engine["pipeline_parallel_size"] == 2 * gpus
    assert llm["model_loading_config"]["model_id"] == "qwen2.5-72b-instruct"
    assert serve["http_options"]["port"] == 8001
    # The gateways reach Ray Serve on the head, once KubeRay marks it serving.
    selector = manifests.get("Service", "-engine-headless")["spec"]["selector"]
    assert selector["ray.io/serve"] == "true"
    assert labels_match({k: v for k, v in selector.items() if k != "ray.io/serve"}, _pod_labels(head))
    assert not manifests.of_kind("LeaderWorkerSet") and not [
        d for d in manifests.of_kind("Deployment") if d["metadata"]["name"].endswith("-engine")
    ]


# -- cross-field checks -----------------------------------------------------------------------------

_GPU = {"enabled": True, "count": 4}
CROSS_FIELD = {
    "autoscaling min above max": (
        {"engine": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        "engine.autoscaling.minReplicas (5) is above maxReplicas (2)",
    ),
    "scale to zero on an HPA": (
        {"engine": {"autoscaling": {"enabled": True, "backend": "hpa", "minReplicas": 0}}},
        "minReplicas 0 (scale to zero) needs backend keda",
    ),
    "scale to zero without discovery": (
        {"engine": {"autoscaling": {"enabled": True, "minReplicas": 0}, "discovery": {"enabled": False}}},
        "needs engine.discovery.enabled",
    ),
    "preStop shorter than discovery's interval": (
        {"engine": {"shutdown": {"preStopSleepSeconds": 2}, "discovery": {"intervalSeconds": 10}}},
        "engine.shutdown.preStopSleepSeconds (2) must be at least engine.discovery.intervalSeconds (10)",
    ),
    "multi-node without GPUs": ({"engine": {"multiNode": {"enabled": True}}}, "needs engine.gpu.enabled"),
    "parallelism that does not fill the group": (
        {
            "engine": {
                "gpu": _GPU,
                "multiNode": {"enabled": True, "size": 2, "tensorParallel": 4, "pipelineParallel": 1},
            }
        },
        "tensorParallel x pipelineParallel (4 x 1 = 4) must equal size x engine.gpu.count (2 x 4 = 8",
    ),
    "RayService autoscaled": (
        {
            "engine": {
                "gpu": _GPU,
                "autoscaling": {"enabled": True},
                "multiNode": {"enabled": True, "backend": "rayservice", "tensorParallel": 4},
            }
        },
        "a RayService has no scale subresource",
    ),
    "RayService with two replicas": (
        {
            "engine": {
                "gpu": _GPU,
                "replicas": 2,
                "multiNode": {"enabled": True, "backend": "rayservice", "tensorParallel": 4},
            }
        },
        "engine.replicas (2) with engine.multiNode.backend rayservice must be 1",
    ),
}


@pytest.mark.parametrize(("values", "message"), CROSS_FIELD.values(), ids=CROSS_FIELD.keys())
def test_scaling_mistakes_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with (
        helm.Chart.load(CHART) as chart,
        pytest.raises((helm.HelmRenderError, helm.HelmValuesError)) as refused,
    ):
        chart.render(values, name="tantra", namespace="llm")
    assert message in str(refused.value)


SCHEMA_REFUSALS = {
    "unknown multi-node backend": (
        {"engine": {"multiNode": {"backend": "slurm"}}},
        "/engine/multiNode/backend",
    ),
    "group of one": ({"engine": {"multiNode": {"size": 1}}}, "/engine/multiNode/size"),
    "unknown autoscaler": ({"engine": {"autoscaling": {"backend": "vpa"}}}, "/engine/autoscaling/backend"),
    "the cold-start wait by hand": ({"gateway": {"settings": {"cold_start_wait_s": 5}}}, "cold_start_wait_s"),
}


@pytest.mark.parametrize(("values", "where"), SCHEMA_REFUSALS.values(), ids=SCHEMA_REFUSALS.keys())
def test_schema_refuses_bad_scaling_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as refused:
        chart.render(values, name="tantra", namespace="llm")
    assert where in str(refused.value)
