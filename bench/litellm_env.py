"""LiteLLM's proxy lives in its own venv: its pins (fastapi, pydantic, httpx) must not touch Tantra's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.servers import ROOT

VENV = ROOT / ".cache" / "bench-venv-litellm"
# Pinned so that runs compare like with like; BENCH_LITELLM_SPEC overrides it.
SPEC = os.environ.get("BENCH_LITELLM_SPEC", "litellm[proxy]==1.108.7")


def ensure_litellm(venv: Path = VENV, spec: str = SPEC) -> Path:
    """Create the venv and install `spec` from PyPI when missing; returns the venv."""
    stamp = venv / ".bench-installed"
    if stamp.is_file() and stamp.read_text().strip() == spec and (venv / "bin" / "litellm").exists():
        return venv
    python = _base_python()
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print(f"bench: installing {spec} into {venv} (first run only; a few minutes)", flush=True)
    subprocess.run([*pip, spec], check=True)
    stamp.write_text(spec + "\n")
    return venv


def litellm_version(venv: Path = VENV) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def _base_python() -> str:
    """The interpreter Tantra's venv was made from, so both venvs run the same Python."""
    base = getattr(sys, "_base_executable", None)
    if base and Path(base).exists():
        return base
    return shutil.which("python3.11") or sys.executable
