"""The chart's chat bots (issue 22, point 5; templates/bots.yaml): off by default; when enabled,
one Deployment each, rendered into objects Kubernetes accepts, running non-root with probes on the
bots' /healthz, their credentials mounted from the operator's Secret and read through NAME_FILE
variables (the names tantra_bots.env reads), the gateway reached at its Service; Slack's HTTP mode
gets a Service, its Socket Mode none; the schema refuses typos and a bot without a Secret."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.deploy.support import BOT_HEALTH, CHART, Manifests, render_chart

BOTS_ON = {
    "bots": {
        "discord": {
            "enabled": True,
            "existingSecret": "discord-creds",
            "env": {"TANTRA_MAX_OUTPUT_TOKENS": 512},
        },
        "slack": {"enabled": True, "existingSecret": "slack-creds"},
    }
}


@pytest.fixture(scope="module")
def with_bots() -> Manifests:
    return render_chart(BOTS_ON)


def _bot(manifests: Manifests, bot: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = manifests.get("Deployment", f"-{bot}-bot")["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    return pod, main


def test_no_bot_by_default(manifests: Manifests) -> None:
    assert not [o for o in manifests.objects if "-bot" in o["metadata"]["name"]]


def test_enabled_bots_render_objects_kubernetes_accepts(with_bots: Manifests) -> None:
    bots = [o for o in with_bots.objects if o["metadata"]["name"].endswith("-bot")]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in bots) == [
        ("Deployment", "tantra-discord-bot"),
        ("Deployment", "tantra-slack-bot"),
        ("Service", "tantra-slack-bot"),  # Slack's HTTP mode
    ]
    for obj in bots:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        if obj["kind"] == "Deployment":
            assert obj["spec"]["replicas"] == 1 and obj["spec"]["strategy"]["type"] == "Recreate"


def test_the_chart_with_bots_lints_without_findings() -> None:
    report = helm.lint(CHART, BOTS_ON, strict=True, kube_version="v1.27.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("bot", ["discord", "slack"])
def test_a_bot_reads_its_secrets_from_files_and_reaches_the_gateway(with_bots: Manifests, bot: str) -> None:
    pod, main = _bot(with_bots, bot)
    assert pod["securityContext"]["runAsNonRoot"] and main["securityContext"]["readOnlyRootFilesystem"]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["TANTRA_BASE_URL"] == "http://tantra-gateway:80"
    gateway_service = with_bots.get("Service", "-gateway")
    assert gateway_service["spec"]["ports"][0]["port"] == 80
    (volume,) = pod["volumes"]
    assert volume["secret"]["secretName"] == f"{bot}-creds"
    (mount,) = main["volumeMounts"]
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert all(v.startswith(mount["mountPath"] + "/") for v in files.values())
    expected = {"TANTRA_API_KEY_FILE"} | (
        {"DISCORD_TOKEN_FILE"} if bot == "discord" else {"SLACK_BOT_TOKEN_FILE", "SLACK_SIGNING_SECRET_FILE"}
    )
    assert set(files) == expected
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": BOT_HEALTH, "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["health"] == int(env["HEALTH_PORT"]) == 8080
    assert main["resources"]["requests"]
    if bot == "discord":
        assert env["TANTRA_MAX_OUTPUT_TOKENS"] == "512"


def test_slack_socket_mode_has_no_service_and_reads_the_app_token() -> None:
    values = {"bots": {"slack": {"enabled": True, "existingSecret": "s", "socketMode": True}}}
    manifests = render_chart(values)
    _, main = _bot(manifests, "slack")
    env = {e["name"] for e in main["env"]}
    assert "SLACK_APP_TOKEN_FILE" in env and "PORT" not in env
    assert not [o for o in manifests.of_kind("Service") if o["metadata"]["name"].endswith("-slack-bot")]


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"bots": {"discord": {"enabeld": True}}}, "enabeld"),
        ({"bots": {"discord": {"enabled": True, "env": {"lower": "x"}}}}, "invalid propertyName 'lower'"),
        ({"bots": {"discord": {"enabled": True}}}, "bots.discord.existingSecret"),
    ],
    ids=["typo", "env name", "no secret"],
)
def test_bad_bot_values_are_refused(values: dict[str, Any], where: str) -> None:
    with (
        helm.Chart.load(CHART) as chart,
        pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as refused,
    ):
        chart.render(values, name="tantra", namespace="llm")
    assert where in str(refused.value)
