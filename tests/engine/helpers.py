"""Small helpers shared by the launcher and CLI tests."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

FAKE_VLLM = Path(__file__).with_name("fake_vllm.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fake_python(tmp_path: Path) -> Path:
    """An executable that ignores `-m vllm...` and runs the fake server instead."""
    script = tmp_path / "fake-python"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_VLLM} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def model_dir(tmp_path: Path, config: object | None = None) -> Path:
    """A directory that passes the launcher's pre-spawn checks."""
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({} if config is None else config))
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False
