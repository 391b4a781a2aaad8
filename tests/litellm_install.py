"""LiteLLM's proxy venv (bench/litellm_env.py), installed beside the first tests when a selected test
needs it: on a fresh clone `pip install litellm[proxy]` stood in front of the first such test
(tests/resilience/test_litellm_vllm.py) for a minute or more of mostly download and unpacking."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

from bench import litellm_env

_install: Future[Path] | None = None


def begin_install() -> Future[Path]:
    """The venv's install, begun on a daemon thread on the first call (a session that ends first
    leaves it unstamped, so the next one installs again)."""
    global _install
    if _install is None:
        install: Future[Path] = Future()

        def run() -> None:
            try:
                install.set_result(litellm_env.ensure_litellm())
            except BaseException as exc:
                install.set_exception(exc)

        threading.Thread(target=run, name="litellm-install", daemon=True).start()
        _install = install
    return _install
