"""`make gpu-check` on a machine without a GPU: it says so and succeeds (docs/spikingbrain.md, "GPU")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_gpu_it_says_so_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "no NVIDIA GPU" in done.stdout


def test_the_make_target_runs_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\ngpu-check: $(STAMP)\n\tPYTHONPATH=. $(PY) scripts/gpu_check.py\n" in makefile
