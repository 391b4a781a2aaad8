"""How each server of a run is started: the fixed-latency upstream, Tantra, LiteLLM's proxy, Redis, vLLM.

Every builder returns an unstarted `Service`, so the caller decides the order and
the cores. All listen on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench.procs import Service, free_port
from bench.upstream import Latency

ROOT = Path(__file__).resolve().parents[1]


def upstream(logs: Path, latency: Latency, model: str, cpus: list[int]) -> tuple[Service, str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.upstream",
        "--port",
        str(port),
        "--model",
        model,
        "--ttft-ms",
        str(latency.ttft_s * 1000),
        "--itl-ms",
        str(latency.itl_s * 1000),
        "--tokens",
        str(latency.default_tokens),
    ]
    url = f"http://127.0.0.1:{port}"
    service = Service(
        "upstream", argv, ready_url=url + "/health", log_path=logs / "upstream.log", cpus=cpus, cwd=ROOT
    )
    return service, url


def tantra(
    logs: Path,
    name: str,
    engine_url: str,
    settings_env: dict[str, str],
    cpus: list[int],
    gateway_src: Path | None = None,
) -> tuple[Service, str]:
    """The gateway as deployed (`gateway.__main__`), with a profile's TANTRA_* settings on top.

    `gateway_src` puts another copy of the gateway package first on the path, which is
    how a proposed hot-path change is measured without touching the tree.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANTRA_")}
    env.update(
        {
            "TANTRA_HOST": "127.0.0.1",
            "TANTRA_PORT": str(port),
            # Its own operator port: gateways side by side cannot share the default 9090.
            "TANTRA_OPERATOR_PORT": str(free_port()),
            "TANTRA_ENGINE_URL": engine_url,
            "TANTRA_LOG_LEVEL": "warning",
            **settings_env,
        }
    )
    # The copy under test first, then the tree for `bench` itself.
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in (gateway_src, ROOT) if p is not None])
    url = f"http://127.0.0.1:{port}"
    service = Service(
        name,
        [sys.executable, "-m", "bench.tantra_server"],
        ready_url=url + "/healthz",
        log_path=logs / f"{_slug(name)}.log",
        env=env,
        cpus=cpus,
        cwd=gateway_src or ROOT,
    )
    return service, url


def litellm(
    logs: Path,
    venv: Path,
    model: str,
    engine_url: str,
    cpus: list[int] | None,
    *,
    master_key: str | None = None,
) -> tuple[Service, str]:
    """LiteLLM's proxy with one OpenAI-compatible model on the same upstream: no database, no
    callbacks, minimal logging; the equivalent of Tantra's own configuration. Without `master_key`
    it checks no keys (as the bench's Tantra profiles); with it, it requires that key, as a proxy
    the gateway reaches as a `kind: openai` upstream would (tests/resilience/test_litellm_vllm.py)."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    config = logs / "litellm-config.yaml"
    config.write_text(_litellm_config(model, engine_url, master_key))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "DATABASE_URL"))}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
            "HF_HUB_OFFLINE": "1",
        }
    )
    argv = [
        str(venv / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    url = f"http://127.0.0.1:{port}"
    service = Service(
        "litellm",
        argv,
        ready_url=url + "/health/liveliness",
        log_path=logs / "litellm.log",
        env=env,
        cpus=cpus,
        ready_timeout_s=180.0,
    )
    return service, url


def _litellm_config(model: str, engine_url: str, master_key: str | None) -> str:
    """LiteLLM's YAML: the one model on the upstream, spend and error logs off, the key (if any)."""
    # Tantra's base profile checks no keys either; LiteLLM refuses that unless told.
    keys = (
        f"  master_key: {master_key}\n"
        if master_key
        else "  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    return (
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {engine_url}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
        "  telemetry: false\n"
        "  request_timeout: 600\n"
        "general_settings:\n"
        "  disable_spend_logs: true\n"
        "  disable_error_logs: true\n" + keys
    )


def redis(logs: Path, cpus: list[int]) -> tuple[Service, str] | None:
    """A throwaway Redis (no persistence) for the limiter, or None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    service = Service(
        "redis",
        argv,
        ready_url=f"tcp://127.0.0.1:{port}",
        log_path=logs / "redis.log",
        cpus=cpus,
        ready_timeout_s=20.0,
    )
    return service, f"redis://127.0.0.1:{port}/0"


def engine(logs: Path, checkpoint: Path, model: str, cpus: list[int]) -> tuple[Service, str]:
    """vLLM's OpenAI server on the tiny checkpoint, started the way `engine.launcher` starts it."""
    from engine.launcher import EngineConfig

    config = EngineConfig(model_dir=checkpoint, served_model_name=model, port=free_port())
    service = Service(
        "engine",
        config.command(),
        ready_url=config.base_url + "/health",
        log_path=logs / "engine.log",
        env=config.environment(),
        cpus=cpus,
        cwd=ROOT,
        ready_timeout_s=900.0,
    )
    return service, config.base_url


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)
