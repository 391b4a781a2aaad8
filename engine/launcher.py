"""Start, watch and stop one vLLM OpenAI server as a child process.

The child runs in its own process group so that stopping it also stops the
engine-core worker vLLM forks, and so a Ctrl-C in the parent's terminal
reaches the parent first, which then stops the child in order. Start
failures are turned into one-line reasons (bad checkpoint, port taken, out of
memory, KV cache too small, timeout) with the tail of the child's log.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = [
    "EngineConfig",
    "EngineProcess",
    "EngineStartError",
    "LogSink",
    "diagnose_log",
    "port_is_free",
    "stderr_sink",
]

GiB = 1 << 30

LogSink = Callable[[str], None]
"""Receives each log line of the child, already prefixed, without newline."""

NO_MEDIA_DOMAIN = "media.invalid"
"""What `--allowed-media-domains` gets when no domain is allowed: vLLM reads an empty list as
"any domain", so the engine is given one under the reserved `.invalid` TLD, which never resolves."""

THINK_PARSER = "think"
"""The reasoning parser of engine/reasoning.py (not imported here: it needs vLLM)."""
THINK_PARSER_MODULE = "engine.reasoning"

_FAST_START_ARGS: tuple[str, ...] = ("--enforce-eager",)
"""Skip torch.compile: with an explicit KV cache size this also skips vLLM's
CPU warm-up pass, which together are most of a tiny model's startup time."""

# Substrings (lower-cased) that name a cause plainly; the first match wins.
# Worded from vLLM 0.32's own messages (KV cache check, CPU worker memory
# checks) and torch's/the kernel's out-of-memory errors.
_DIAGNOSES: tuple[tuple[str, str], ...] = (
    (
        "to serve at least one request with the model's max seq len",
        "KV cache too small for max_model_len: raise kv_cache_gib or lower max_model_len",
    ),
    ("no available memory for the cache blocks", "KV cache too small: raise kv_cache_gib"),
    (
        "less than requested memory for kv",
        "not enough free memory for the requested KV cache: lower kv_cache_gib",
    ),
    ("less than desired cpu memory utilization", "not enough free memory on this machine"),
    ("outofmemoryerror", "out of memory"),
    ("out of memory", "out of memory"),
    ("cannot allocate memory", "out of memory"),
    ("address already in use", "port already in use"),
    (
        "has no attribute 'cpu_gemm_wna16'",
        "this CPU has no AVX-512, and vLLM's CPU build has no 4-bit (W4A16) kernel without it: "
        "serve the W8A8 or the bf16 checkpoint here (docs/quantization.md)",
    ),
)
_MAX_LEN_ESTIMATE = re.compile(r"estimated maximum model length is (\d+)")
_EXCEPTION_LINE = re.compile(r"(?:^|\] )((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)): (.+)$")
# Exception lines that only point elsewhere, or that every start prints
# (a vLLM plugin failing to import is logged and ignored by vLLM).
_NOT_A_CAUSE = (
    "see root cause above",
    "see stack trace (above)",
    "failed to load plugin",
    "no module named 'engine.spikingbrain",
)


class EngineStartError(RuntimeError):
    """The engine did not become healthy; `reason` is one line, `log_tail` the child's last lines."""

    def __init__(self, reason: str, log_tail: Sequence[str] = (), *, bad_input: bool = False) -> None:
        self.reason = reason
        self.log_tail = list(log_tail)
        self.bad_input = bad_input
        """True when the caller's input is at fault (missing checkpoint, port taken), not the run."""
        message = reason
        if self.log_tail:
            message += "\n--- last engine log lines ---\n" + "\n".join(self.log_tail)
        super().__init__(message)


@dataclass(frozen=True)
class EngineConfig:
    """How to run one vLLM server.

    `request_id_headers` makes vLLM echo `X-Request-Id` (and use it in the
    completion id); `tool_call_parser` enables `tools`/`tool_choice`.
    `device="cuda"` only changes the environment and arguments passed to
    vLLM: no CPU KV-cache variable or size, no eager mode (CUDA graphs and
    torch.compile on, as vLLM defaults), GPU memory utilisation left to vLLM.
    It is untested here because this machine has no GPU (`make gpu-check`).

    `allowed_media_domains`: hosts vLLM itself may fetch media URLs from; none by default (the
    gateway sends media the engine takes as `data:` URLs, so the engine fetches nothing, and a URL
    that reached it anyway must not be a way into the network: issue 16, point 6).

    `cpu_cores` ("0-3", "4,5") pins vLLM's CPU worker threads to those cores. Left unset, vLLM
    binds every server to the same first cores, so two replicas on one host take turns on one
    core and each stalls for seconds while the other decodes: give each its own (`split_cores`).

    `worker_in_process` runs vLLM's CPU model runner inside its engine-core process (vLLM's `uni`
    executor, with `VLLM_ENABLE_V1_MULTIPROCESSING=0`) instead of a third process: a start is about
    20 s shorter on a busy 2-core host (45 s against 69 s for the tiny model, the same greedy
    answer) and one process's memory less. vLLM then binds no threads: `cpu_cores` is not applied,
    and the worker runs `OMP_NUM_THREADS` threads (1 unless the environment says otherwise), so it
    suits small engines sharing a host (the test suite's), not a tuned server. CPU only.

    `runner="pooling"` serves an embedding (or scoring, classification) model: vLLM's pooling
    runner registers /v1/embeddings, /pooling, /v1/score and /v1/rerank instead of the generation
    routes, and no tool-call parser is passed (it belongs to generation). `max_model_len=None`
    leaves the length to vLLM, which derives it from the checkpoint (all-MiniLM-L6-v2: 256, the
    sentence-transformers `max_seq_length`; a larger value is refused).
    """

    model_dir: Path
    served_model_name: str = "tantra-tiny"
    host: str = "127.0.0.1"
    port: int = 8001
    max_model_len: int | None = 2048
    kv_cache_gib: float = 1.0
    dtype: str = "bfloat16"
    device: Literal["cpu", "cuda"] = "cpu"
    fast_start: bool = True
    request_id_headers: bool = True
    tool_call_parser: str | None = "hermes"
    extra_args: Sequence[str] = ()
    allowed_media_domains: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    python: str = sys.executable
    cpu_cores: str | None = None
    worker_in_process: bool = False
    runner: Literal["generate", "pooling"] | None = None
    # vLLM's scheduler: `priority` serves lower `priority` values first (interactive requests have 0;
    # the gateway sends batch lines at TANTRA_BATCH_ENGINE_PRIORITY) and preempts higher ones when
    # full; `fcfs` (vLLM's own default) takes the field and ignores it (docs/batches.md).
    scheduling_policy: Literal["priority", "fcfs"] = "priority"
    # vLLM's reasoning parser (`--reasoning-parser`): the answer's reasoning apart from its content
    # (`reasoning` in chat, reasoning items in Responses). `think` is engine/reasoning.py's, for
    # templates where the model opens `<think>` itself (SpikingBrain, Qwen2.5 ChatML); vLLM's own
    # (`qwen3`, `deepseek_r1`, ...) by name. None: no split (docs/orchestration.md, "Reasoning").
    reasoning_parser: str | None = None
    # Structured outputs constrain the reasoning too (vLLM's `enable_in_reasoning`, always on with
    # `think`); otherwise the grammar starts after `</think>`.
    structured_outputs_in_reasoning: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"{self.base_url}/v1"

    def command(self) -> list[str]:
        """The child's argv."""
        args = [
            self.python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(Path(self.model_dir).absolute()),
            "--served-model-name",
            self.served_model_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
        ]
        if self.device == "cpu":
            # On a GPU vLLM sizes the cache from `--gpu-memory-utilization` (its default, or the
            # operator's in `extra_args`) after profiling the model: leave that to vLLM.
            args += ["--kv-cache-memory-bytes", str(int(self.kv_cache_gib * GiB))]
        if self.max_model_len is not None:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.runner is not None:
            args += ["--runner", self.runner]
        if self.runner != "pooling":
            args += ["--scheduling-policy", self.scheduling_policy]
        if self.request_id_headers:
            args.append("--enable-request-id-headers")
        if self.tool_call_parser and self.runner != "pooling":
            # Without these vLLM rejects any request carrying `tools` with
            # 400; Qwen2.5 emits Hermes-style <tool_call> JSON.
            args += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_call_parser]
        args += self._reasoning_args()
        if self.fast_start and self.device == "cpu":
            # On a GPU, CUDA graphs and torch.compile are what make decoding fast, and the GLA op
            # is graph-safe there (engine/spikingbrain/gla_batch.py): vLLM's defaults stand.
            args.extend(_FAST_START_ARGS)
        if self.worker_in_process and self.device == "cpu":
            args += ["--distributed-executor-backend", "uni"]
        args += ["--allowed-media-domains", *(self.allowed_media_domains or (NO_MEDIA_DOMAIN,))]
        args.extend(self.extra_args)
        return args

    def _reasoning_args(self) -> list[str]:
        if not self.reasoning_parser or self.runner == "pooling":
            return []
        args = ["--reasoning-parser", self.reasoning_parser]
        if self.reasoning_parser == THINK_PARSER:
            # Imported by module name in the API server and the engine core (vLLM's plugin option).
            args += ["--reasoning-parser-plugin", THINK_PARSER_MODULE]
        # With `think`, an answer need not think at all: a grammar waiting for `</think>` would
        # never start, so it covers the whole answer (a structured answer then does not think).
        if self.structured_outputs_in_reasoning or self.reasoning_parser == THINK_PARSER:
            args += ["--structured-outputs-config", json.dumps({"enable_in_reasoning": True})]
        return args

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: `base` (default: ours) plus offline and cache settings."""
        env = dict(os.environ if base is None else base)
        env["HF_HUB_OFFLINE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        # vLLM reads the legacy variable after the flag and it wins, so keep
        # them in agreement; it only holds whole GiB.
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        if self.device == "cpu" and float(self.kv_cache_gib).is_integer():
            env["VLLM_CPU_KVCACHE_SPACE"] = str(int(self.kv_cache_gib))
        if self.device == "cpu" and self.cpu_cores:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_cores
        if self.device == "cpu" and self.worker_in_process:
            # vLLM's CPU platform allows the `uni` executor only without engine multiprocessing
            # (the API server still runs its engine core in a process of its own).
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            env.setdefault("OMP_NUM_THREADS", "1")
        # A media URL of an allowed domain must not redirect vLLM to another host.
        env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] = "0"
        env.update(self.env)
        return env


def split_cores(replicas: int, cores: Sequence[int] | None = None) -> list[str | None]:
    """Disjoint `cpu_cores` for `replicas` engines on this host (default: the cores this process
    may use), as even as the count allows; None for each when there are fewer cores than engines
    (vLLM's own binding then, shared)."""
    available = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if replicas < 1 or len(available) < replicas:
        return [None] * max(replicas, 0)
    share, extra = divmod(len(available), replicas)
    sets: list[str | None] = []
    start = 0
    for index in range(replicas):
        size = share + (1 if index < extra else 0)
        sets.append(",".join(str(core) for core in available[start : start + size]))
        start += size
    return sets


def stderr_sink(line: str) -> None:
    """Default log sink: the child's lines on our stderr."""
    print(line, file=sys.stderr, flush=True)


class EngineProcess:
    """One vLLM server child: `start`, `wait_healthy`, `stop`, or use it as a context manager.

    The context manager starts the child and waits until `GET /health`
    answers 200 (up to `startup_timeout` seconds), and always stops it on exit.

    `kill_on_parent_exit` asks Linux to SIGTERM the child when the thread
    that spawned it dies, so a crashed test run leaves no server behind. The
    kernel ties this to the spawning *thread*, so by default it is only on
    when `start` runs on the main thread.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        log_sink: LogSink | None = stderr_sink,
        log_prefix: str | None = None,
        log_lines: int = 400,
        startup_timeout: float = 600.0,
        kill_on_parent_exit: bool | None = None,
    ) -> None:
        self.config = config
        self.startup_timeout = startup_timeout
        self._sink = log_sink
        self._prefix = (
            f"[engine {config.served_model_name}:{config.port}] " if log_prefix is None else log_prefix
        )
        self._log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._log_lock = threading.Lock()
        self._kill_on_parent_exit = kill_on_parent_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started_at = 0.0
        self.startup_seconds: float | None = None
        """Seconds from spawn to the first healthy answer, once healthy."""

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Check the inputs, then spawn the child; returns without waiting for health."""
        if self._proc is not None:
            raise RuntimeError("engine already started")
        self._check_inputs()
        self._proc = subprocess.Popen(
            self.config.command(),
            env=self.config.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if self._tie_to_parent() else None,
        )
        self._started_at = time.monotonic()
        self._reader = threading.Thread(
            target=self._pump_log, name=f"engine-log-{self.config.port}", daemon=True
        )
        self._reader.start()

    def wait_healthy(self, timeout: float | None = None) -> float:
        """Poll `GET /health` until it answers 200; returns seconds since spawn.

        Raises `EngineStartError` if the child exits first or `timeout`
        (default `startup_timeout`) passes; the child is left running on
        timeout, so the caller decides whether to `stop` it.
        """
        proc = self._require_started()
        limit = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            code = proc.poll()
            if code is not None:
                self._drain_log()
                raise EngineStartError(self._exit_reason(code), self.log_tail())
            if self.is_healthy():
                self.startup_seconds = time.monotonic() - self._started_at
                return self.startup_seconds
            if time.monotonic() >= deadline:
                raise EngineStartError(
                    f"engine did not become healthy within {limit:.0f}s (still running, pid {proc.pid})",
                    self.log_tail(),
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the child's process group, then SIGKILL after `timeout`; returns its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # The engine-core worker can outlive a killed server: clear the group.
        _signal_group(proc.pid, signal.SIGKILL)
        self._drain_log()
        return proc.returncode

    def __enter__(self) -> EngineProcess:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def api_base(self) -> str:
        return self.config.api_base

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """One `GET /health` probe."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=timeout) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, lines: int = 40) -> list[str]:
        """The child's last `lines` log lines, without prefix."""
        with self._log_lock:
            return list(self._log)[-lines:]

    # -- internals -----------------------------------------------------------

    def _check_inputs(self) -> None:
        model_dir = Path(self.config.model_dir)
        if not model_dir.is_dir():
            raise EngineStartError(f"checkpoint directory {model_dir} does not exist", bad_input=True)
        config_file = model_dir / "config.json"
        if not config_file.is_file():
            raise EngineStartError(
                f"{model_dir} has no config.json; is it a model checkpoint?", bad_input=True
            )
        try:
            json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineStartError(f"{config_file} is not valid JSON: {exc}", bad_input=True) from exc
        if not port_is_free(self.config.host, self.config.port):
            raise EngineStartError(
                f"port {self.config.port} on {self.config.host} is already in use", bad_input=True
            )

    def _tie_to_parent(self) -> bool:
        if self._kill_on_parent_exit is not None:
            return self._kill_on_parent_exit
        return threading.current_thread() is threading.main_thread()

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("engine not started")
        return self._proc

    def _pump_log(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._log_lock:
                self._log.append(line)
            if self._sink is not None:
                # A broken sink must not stop us draining the pipe, or the
                # child would block on a full pipe buffer.
                with contextlib.suppress(Exception):
                    self._sink(self._prefix + line)
        proc.stdout.close()

    def _drain_log(self) -> None:
        """Let the reader thread finish so the tail includes the child's last words."""
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _exit_reason(self, code: int) -> str:
        seconds = time.monotonic() - self._started_at
        if code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                how += " (likely the kernel's out-of-memory killer)"
        else:
            how = f"exited with code {code}"
        cause = diagnose_log(self.log_tail(200))
        return f"engine {how} after {seconds:.0f}s" + (f": {cause}" if cause else "")


def diagnose_log(lines: Sequence[str]) -> str | None:
    """A plain cause (out of memory, KV cache too small, ...) found in a log, or None.

    Falls back to the last exception vLLM printed that is not a pointer to
    another one, so the reason is never just an exit code when the log says more.
    """
    text = "\n".join(lines)
    lowered = text.lower()
    for needle, cause in _DIAGNOSES:
        if needle in lowered:
            estimate = _MAX_LEN_ESTIMATE.search(text)
            if estimate and "max_model_len" in cause:
                cause += f" (vLLM estimates {estimate.group(1)} tokens fit)"
            return cause
    for index in range(len(lines) - 1, -1, -1):
        match = _EXCEPTION_LINE.search(lines[index].strip())
        if match and not any(marker in match.group(0).lower() for marker in _NOT_A_CAUSE):
            reason = f"{match.group(1)}: {match.group(2)}"
            # pydantic puts the useful part ("Value error, ...") on a later line.
            detail = next(
                (line.strip() for line in lines[index + 1 : index + 4] if "Value error, " in line), None
            )
            if detail:
                reason += " - " + detail.split("Value error, ", 1)[1]
            return reason[:400]
    return None


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now.

    Binds with SO_REUSEADDR as uvicorn does, so a port in TIME_WAIT counts as
    free but one with a live listener does not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when its parent thread dies.

    Without it a crashed test run leaves a vLLM server holding its port and
    CPU. `prctl` is looked up here, in the parent, so the forked child does
    no dynamic loading before exec. Linux only; elsewhere None.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook
