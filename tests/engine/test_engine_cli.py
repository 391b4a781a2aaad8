"""`python -m engine`: build-checkpoint and serve, with a stand-in server for serve."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.__main__ import main
from engine.checkpoint import checkpoint_is_complete, read_manifest
from tests.engine.helpers import fake_python, free_port, model_dir, wait_gone

REPO_ROOT = Path(engine.__file__).resolve().parent.parent


def test_build_checkpoint_then_skip_then_force(
    tmp_path: Path, tokenizer_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ck"
    common = ["build-checkpoint", "--preset", "tiny", "--out", str(out), "--cache-dir", str(tokenizer_cache)]
    assert main(common) == 0
    assert capsys.readouterr().out.strip() == str(out.absolute())
    assert checkpoint_is_complete(out)

    assert main(common) == 0
    captured = capsys.readouterr()
    assert "already complete" in captured.err
    assert captured.out.strip() == str(out.absolute())

    assert main([*common, "--seed", "7"]) == 2
    assert "--force" in capsys.readouterr().err

    assert main([*common, "--seed", "7", "--force"]) == 0
    manifest = read_manifest(out)
    assert manifest is not None and manifest["seed"] == 7


def test_build_checkpoint_rejects_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["build-checkpoint", "--preset", "enormous"])
    assert caught.value.code == 2


def test_serve_missing_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", str(tmp_path / "missing"), "--port", str(free_port())]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_taken_port_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert main(["serve", "--model", str(model_dir(tmp_path)), "--port", str(port)]) == 2
    assert "already in use" in capsys.readouterr().err


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--python", str(fake_python(tmp_path)), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_ready_and_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    pid_file = tmp_path / "grandchild.pid"
    proc = _serve(
        tmp_path,
        "--model", str(model_dir(tmp_path)), "--served-model-name", "fake", "--port", str(port),
        env={"FAKE_VLLM_GRANDCHILD_PIDFILE": str(pid_file)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.strip() == f"engine ready: http://127.0.0.1:{port}/v1 (model fake)"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "fake vllm serving" in err  # the child's log is streamed, prefixed
    assert wait_gone(int(pid_file.read_text()))


def test_serve_runtime_failure_exits_1(tmp_path: Path) -> None:
    proc = _serve(
        tmp_path,
        "--model",
        str(model_dir(tmp_path)),
        "--port",
        str(free_port()),
        env={"FAKE_VLLM_MODE": "oom"},
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "out of memory" in err


def test_serve_without_model_builds_the_default_tiny_checkpoint(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--port", str(free_port()), env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("engine ready: ")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert checkpoint_is_complete(tmp_path / ".cache" / "checkpoints" / "tiny")
