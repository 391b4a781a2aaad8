"""EngineProcess without a healthy vLLM: argument building, pre-spawn checks, failure reasons, stopping.

A stand-in server (fake_vllm.py) plays vLLM where only process behaviour
matters; the one real-vLLM test here makes it fail on purpose.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from engine.launcher import (
    EngineConfig,
    EngineProcess,
    EngineStartError,
    GiB,
    diagnose_log,
    port_is_free,
    split_cores,
)
from tests.engine.helpers import fake_python, free_port, model_dir, pid_alive, wait_gone


def _no_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the launcher spawned a process although its input was bad")

    monkeypatch.setattr(subprocess, "Popen", refuse)


def test_command_defaults(tmp_path: Path) -> None:
    config = EngineConfig(model_dir=tmp_path, served_model_name="tiny", port=8123)
    argv = config.command()
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(argv)
    for expected in (
        f"--model {tmp_path}",
        "--served-model-name tiny",
        "--host 127.0.0.1",
        "--port 8123",
        "--max-model-len 2048",
        "--dtype bfloat16",
        f"--kv-cache-memory-bytes {GiB}",
        "--enable-request-id-headers",
        "--enable-auto-tool-choice --tool-call-parser hermes",
        "--enforce-eager",
        # Batch lines (TANTRA_BATCH_ENGINE_PRIORITY) wait behind interactive requests.
        "--scheduling-policy priority",
    ):
        assert expected in joined
    assert config.api_base == "http://127.0.0.1:8123/v1"


def test_command_options(tmp_path: Path) -> None:
    config = EngineConfig(
        model_dir=tmp_path,
        fast_start=False,
        request_id_headers=False,
        tool_call_parser=None,
        kv_cache_gib=0.5,
        extra_args=("--max-num-seqs", "4"),
        scheduling_policy="fcfs",
    )
    argv = config.command()
    assert argv[argv.index("--scheduling-policy") + 1] == "fcfs"
    assert "--enforce-eager" not in argv
    assert "--enable-request-id-headers" not in argv
    assert "--enable-auto-tool-choice" not in argv
    assert argv[-2:] == ["--max-num-seqs", "4"]
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == str(GiB // 2)


def test_on_a_gpu_vllm_keeps_cuda_graphs_and_sizes_its_own_cache(tmp_path: Path) -> None:
    argv = EngineConfig(model_dir=tmp_path, device="cuda", kv_cache_gib=4).command()
    assert "--enforce-eager" not in argv
    assert "--kv-cache-memory-bytes" not in argv
    # The operator's own memory setting passes through.
    argv = EngineConfig(
        model_dir=tmp_path, device="cuda", extra_args=("--gpu-memory-utilization", "0.8")
    ).command()
    assert argv[-2:] == ["--gpu-memory-utilization", "0.8"]


def test_environment(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "40"}
    env = EngineConfig(model_dir=tmp_path, kv_cache_gib=2, env={"EXTRA": "1"}).environment(base)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["EXTRA"] == "1"
    assert env["PATH"] == "/bin"
    # vLLM's variable holds whole GiB only and would override the exact flag.
    assert "VLLM_CPU_KVCACHE_SPACE" not in EngineConfig(model_dir=tmp_path, kv_cache_gib=0.5).environment(
        base
    )
    assert "VLLM_CPU_KVCACHE_SPACE" not in EngineConfig(model_dir=tmp_path, device="cuda").environment(base)


def test_cpu_cores_pin_the_worker_threads(tmp_path: Path) -> None:
    env = EngineConfig(model_dir=tmp_path, cpu_cores="2,3").environment({})
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "2,3"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in EngineConfig(model_dir=tmp_path).environment({})
    assert "VLLM_CPU_OMP_THREADS_BIND" not in EngineConfig(
        model_dir=tmp_path, cpu_cores="0", device="cuda"
    ).environment({})


def test_a_worker_in_process_is_vllms_uni_executor_on_cpu_only(tmp_path: Path) -> None:
    config = EngineConfig(model_dir=tmp_path, worker_in_process=True)
    assert config.command()[-4:-2] == ["--distributed-executor-backend", "uni"]
    env = config.environment({})
    assert (env["VLLM_ENABLE_V1_MULTIPROCESSING"], env["OMP_NUM_THREADS"]) == ("0", "1")
    assert config.environment({"OMP_NUM_THREADS": "4"})["OMP_NUM_THREADS"] == "4"
    gpu = EngineConfig(model_dir=tmp_path, worker_in_process=True, device="cuda")
    assert "uni" not in gpu.command() and "VLLM_ENABLE_V1_MULTIPROCESSING" not in gpu.environment({})
    assert "uni" not in EngineConfig(model_dir=tmp_path).command()


def test_split_cores_gives_each_replica_its_own() -> None:
    assert split_cores(2, [0, 1]) == ["0", "1"]
    assert split_cores(2, [4, 5, 6, 7, 8]) == ["4,5,6", "7,8"]
    assert split_cores(3, [0, 1]) == [None, None, None]  # too few: vLLM's shared binding
    assert split_cores(1, [0, 1]) == ["0,1"]


def test_missing_checkpoint_fails_before_spawning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_spawn(monkeypatch)
    engine = EngineProcess(EngineConfig(model_dir=tmp_path / "nope", port=free_port()), log_sink=None)
    with pytest.raises(EngineStartError, match="does not exist") as caught:
        engine.start()
    assert caught.value.bad_input
    assert engine.pid is None


def test_missing_config_fails_before_spawning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_spawn(monkeypatch)
    with pytest.raises(EngineStartError, match=r"no config\.json") as caught:
        EngineProcess(EngineConfig(model_dir=tmp_path, port=free_port()), log_sink=None).start()
    assert caught.value.bad_input


def test_unparseable_config_fails_before_spawning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_spawn(monkeypatch)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(EngineStartError, match="not valid JSON"):
        EngineProcess(EngineConfig(model_dir=tmp_path, port=free_port()), log_sink=None).start()


def test_taken_port_fails_before_spawning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_spawn(monkeypatch)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        engine = EngineProcess(EngineConfig(model_dir=model_dir(tmp_path), port=port), log_sink=None)
        with pytest.raises(EngineStartError, match=f"port {port} .* already in use") as caught:
            engine.start()
    assert caught.value.bad_input
    assert port_is_free("127.0.0.1", port)


def test_healthy_child_is_stopped_with_its_whole_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    lines: list[str] = []
    config = EngineConfig(
        model_dir=model_dir(tmp_path),
        served_model_name="fake",
        port=free_port(),
        python=str(fake_python(tmp_path)),
        env={"FAKE_VLLM_GRANDCHILD_PIDFILE": str(pid_file)},
    )
    with EngineProcess(config, log_sink=lines.append, startup_timeout=30) as engine:
        assert engine.running
        assert engine.is_healthy()
        assert engine.startup_seconds is not None and engine.startup_seconds < 30
        grandchild = int(pid_file.read_text())
        assert pid_alive(grandchild)
    assert not engine.running
    assert engine.returncode is not None
    assert wait_gone(grandchild)
    assert any(line.startswith(f"[engine fake:{config.port}] fake vllm serving") for line in lines)
    assert any("fake vllm serving" in line for line in engine.log_tail())


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    config = EngineConfig(
        model_dir=model_dir(tmp_path),
        port=free_port(),
        python=str(fake_python(tmp_path)),
        env={"FAKE_VLLM_IGNORE_TERM": "1"},
    )
    engine = EngineProcess(config, log_sink=None)
    engine.start()
    engine.wait_healthy(30)
    assert engine.pid is not None
    started = time.monotonic()
    assert engine.stop(timeout=1) == -9
    assert time.monotonic() - started < 10


def _failing(tmp_path: Path, mode: str) -> EngineProcess:
    config = EngineConfig(
        model_dir=model_dir(tmp_path),
        port=free_port(),
        python=str(fake_python(tmp_path)),
        env={"FAKE_VLLM_MODE": mode},
    )
    return EngineProcess(config, log_sink=None, log_lines=50)


def test_out_of_memory_is_reported_plainly(tmp_path: Path) -> None:
    engine = _failing(tmp_path, "oom")
    engine.start()
    with pytest.raises(EngineStartError) as caught:
        engine.wait_healthy(30)
    assert "exited with code 1" in caught.value.reason
    assert caught.value.reason.endswith(": out of memory")
    assert "\n" not in caught.value.reason
    assert any("OutOfMemoryError" in line for line in caught.value.log_tail)
    assert not caught.value.bad_input


def test_killed_child_points_at_the_oom_killer(tmp_path: Path) -> None:
    engine = _failing(tmp_path, "sigkill")
    engine.start()
    with pytest.raises(EngineStartError, match=r"killed by signal SIGKILL .*out-of-memory killer"):
        engine.wait_healthy(30)


def test_timeout_leaves_the_child_to_the_caller(tmp_path: Path) -> None:
    engine = _failing(tmp_path, "hang")
    engine.start()
    with pytest.raises(EngineStartError, match="did not become healthy within 1s"):
        engine.wait_healthy(timeout=1)
    assert engine.running
    engine.stop(timeout=5)
    assert not engine.running


def test_context_manager_stops_the_child_when_start_fails(tmp_path: Path) -> None:
    engine = _failing(tmp_path, "hang")
    engine.startup_timeout = 1
    with pytest.raises(EngineStartError), engine:
        pass
    assert not engine.running


def test_log_ring_buffer_keeps_the_tail(tmp_path: Path) -> None:
    engine = _failing(tmp_path, "oom")
    engine._log.extend(f"old {i}" for i in range(100))
    assert engine.log_tail(3) == ["old 97", "old 98", "old 99"]
    assert len(engine.log_tail(1000)) == 50


PREFIX = "(EngineCore pid=9630) ERROR 11-25 13:43:15 [core.py:1510] "
ROOT_POINTER = (
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {...}"
)
KV_TOO_SMALL = [
    PREFIX + "EngineCore failed to start.",
    PREFIX + "ValueError: To serve at least one request with the model's max seq len (4096), "
    "(0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB). "
    "Based on the available memory, the estimated maximum model length is 896. Try increasing ...",
    ROOT_POINTER,
]


def test_diagnose_kv_cache_too_small() -> None:
    assert diagnose_log(KV_TOO_SMALL) == (
        "KV cache too small for max_model_len: raise kv_cache_gib or lower max_model_len"
        " (vLLM estimates 896 tokens fit)"
    )


def test_diagnose_a_4_bit_checkpoint_on_a_cpu_without_avx512() -> None:
    """vLLM's AVX2 kernels have no W4A16 op: the first forward pass fails with this line (seen on an
    AVX2-only host)."""
    line = PREFIX + "AttributeError: '_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'"
    cause = diagnose_log([line, ROOT_POINTER])
    assert cause is not None and "no AVX-512" in cause and "W8A8" in cause


def test_diagnose_falls_back_to_the_root_exception() -> None:
    lines = [
        "Failed to load plugin spikingbrain",
        "ModuleNotFoundError: No module named 'engine.spikingbrain.vllm_plugin'",
        PREFIX + "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
        "  Value error, The checkpoint you are trying to load has model type `bogus`",
        PREFIX + "ValueError: Model architectures ['BogusForCausalLM'] are not supported",
        ROOT_POINTER,
    ]
    assert diagnose_log(lines) == "ValueError: Model architectures ['BogusForCausalLM'] are not supported"
    assert diagnose_log(lines[:4]) == (
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig"
        " - The checkpoint you are trying to load has model type `bogus`"
    )
    assert diagnose_log(["plain output", "no errors here"]) is None


def test_real_vllm_with_a_broken_checkpoint_exits_with_a_reason(tmp_path: Path) -> None:
    """The only test that runs vLLM: it must fail fast and say why, never become healthy."""
    bogus = model_dir(tmp_path, {"architectures": ["TantraBogusForCausalLM"], "model_type": "tantra_bogus"})
    (bogus / "model.safetensors").write_bytes(b"not weights")
    engine = EngineProcess(
        EngineConfig(model_dir=bogus, port=free_port()), log_sink=None, startup_timeout=300
    )
    engine.start()
    try:
        with pytest.raises(EngineStartError) as caught:
            engine.wait_healthy()
    finally:
        engine.stop()
    reason = caught.value.reason
    assert reason.startswith("engine exited with code ")
    assert "\n" not in reason
    assert caught.value.log_tail
    assert len(reason.split(": ", 1)) == 2, reason  # a cause follows the exit code
    assert str(caught.value).count("\n") >= 2  # the message carries the log tail
    json.dumps(caught.value.log_tail)


def test_vllm_fetches_media_from_no_domain_unless_told(tmp_path: Path) -> None:
    """Issue 16, point 6: vLLM reads an empty `--allowed-media-domains` as "any domain"."""
    argv = EngineConfig(model_dir=tmp_path).command()
    assert argv[argv.index("--allowed-media-domains") + 1 :][:1] == ["media.invalid"]
    assert EngineConfig(model_dir=tmp_path).environment({})["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] == "0"
    opened = EngineConfig(model_dir=tmp_path, allowed_media_domains=("img.example.com",)).command()
    assert opened[opened.index("--allowed-media-domains") + 1] == "img.example.com"
