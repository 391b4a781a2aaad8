"""Fixtures for the SpikingBrain tests: a tiny random `gla_swa` checkpoint, fixed prompts,
the reference's answers for them, and a way to run vLLM's offline engine on them."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.architectures import register_architecture
from engine.checkpoint import ensure_checkpoint
from engine.spikingbrain.checkpoint import GlaSwaW8ASpikeWriter

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("vllm_driver.py")
NEW_TOKENS = 64
# Mixed lengths around the tiny preset's 32-token window, including a
# one-token prompt (a "prefill" vLLM schedules like a decode step).
PROMPT_LENGTHS = (1, 9, 31, 33, 64, 97, 150, 230)
VLLM_TIMEOUT_S = 1500


@dataclass(frozen=True)
class ReferenceAnswers:
    """Greedy continuations and float32 prompt logits from the plain-PyTorch reference."""

    greedy: list[list[int]]
    prompt_logits: list[torch.Tensor]


@pytest.fixture(scope="session")
def gla_swa_checkpoint() -> Path:
    return ensure_checkpoint(ROOT / ".cache" / "checkpoints" / "gla_swa-tiny", "tiny", 0, "gla_swa")


@pytest.fixture(scope="session")
def w8aspike_checkpoint() -> Path:
    """The same shape in W8ASpike's layout: full-rank gate, int8-grid scales on every projection."""
    register_architecture(GlaSwaW8ASpikeWriter.name, GlaSwaW8ASpikeWriter())
    return ensure_checkpoint(
        ROOT / ".cache" / "checkpoints" / "gla_swa_w8aspike-tiny", "tiny", 0, GlaSwaW8ASpikeWriter.name
    )


@pytest.fixture(scope="session")
def prompts() -> list[list[int]]:
    rng = random.Random(0)
    return [[rng.randrange(151643) for _ in range(n)] for n in PROMPT_LENGTHS]


@pytest.fixture(scope="session")
def reference(gla_swa_checkpoint: Path) -> Any:
    from engine.spikingbrain.reference import GLAswaReference

    return GLAswaReference.from_pretrained(gla_swa_checkpoint)


@pytest.fixture(scope="session")
def reference_answers(reference: Any, prompts: list[list[int]]) -> ReferenceAnswers:
    return ReferenceAnswers(
        greedy=[reference.generate_greedy(p, NEW_TOKENS) for p in prompts],
        prompt_logits=[reference.prefill_logits(p) for p in prompts],
    )


RUNS_AT_ONCE = 2
"""vLLM runs side by side: a run's start is mostly one busy core and this machine has two."""


class VllmRunner:
    """Runs the offline-engine driver in its own process group and returns its JSON report.

    Each run starts vLLM, submits all prompts as one batch, and tears the whole process group down
    before it ends. `start` begins a run in the background (at most RUNS_AT_ONCE at a time) and
    calling the runner waits for it, so a module's runs overlap with each other and with the
    reference's work in the test process. `start_in_one_process` begins several runs that one
    driver process makes one after another, paying for the imports once.
    """

    def __init__(self, checkpoint: Path, prompts: list[list[int]], workdir: Path) -> None:
        self._checkpoint, self._prompts, self._workdir = checkpoint, prompts, workdir
        self._pool = ThreadPoolExecutor(RUNS_AT_ONCE, thread_name_prefix="vllm-run")
        self._runs: dict[str, Future[dict[str, dict[str, Any]]]] = {}

    def start(
        self,
        name: str,
        *args: str,
        model: Path | None = None,
        token_prompts: list[list[int]] | None = None,
        new_tokens: int = NEW_TOKENS,
    ) -> Future[dict[str, Any]]:
        """The run called `name`, begun now unless it was begun before (with the same arguments)."""
        plan = self.start_in_one_process(
            name, {name: args}, model=model, token_prompts=token_prompts, new_tokens=new_tokens
        )
        report: Future[dict[str, Any]] = Future()
        plan.add_done_callback(lambda done: _settle(report, done, name))
        return report

    def start_in_one_process(
        self,
        name: str,
        runs: Mapping[str, Sequence[str]],
        *,
        model: Path | None = None,
        token_prompts: list[list[int]] | None = None,
        new_tokens: int = NEW_TOKENS,
    ) -> Future[dict[str, dict[str, Any]]]:
        """`runs` (report name: driver arguments) made one after another by one driver process
        called `name`; the reports by run name. A run's own
        `--model` comes after the common one, so it wins."""
        if name not in self._runs:
            prompts = self._prompts if token_prompts is None else token_prompts
            self._runs[name] = self._pool.submit(
                self._run, name, dict(runs), model or self._checkpoint, prompts, new_tokens
            )
        return self._runs[name]

    def __call__(
        self,
        name: str,
        *args: str,
        model: Path | None = None,
        token_prompts: list[list[int]] | None = None,
        new_tokens: int = NEW_TOKENS,
    ) -> dict[str, Any]:
        future = self.start(name, *args, model=model, token_prompts=token_prompts, new_tokens=new_tokens)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(
        self,
        name: str,
        runs: dict[str, Sequence[str]],
        model: Path,
        prompts: list[list[int]],
        new_tokens: int,
    ) -> dict[str, dict[str, Any]]:
        prompt_file = self._workdir / f"{name}-prompts.json"
        prompt_file.write_text(json.dumps(prompts))
        outs = {run: self._workdir / f"{run}.json" for run in runs}
        common = ["--model", str(model), "--prompts", str(prompt_file), "--max-tokens", str(new_tokens)]
        plan_file = self._workdir / f"{name}-plan.json"
        plan_file.write_text(
            json.dumps([[*common, "--out", str(outs[run]), *args] for run, args in runs.items()])
        )
        log = ROOT / ".cache" / f"spikingbrain-vllm-{name}.log"
        cmd = [sys.executable, str(DRIVER), "--plan", str(plan_file)]
        # PYTHONPATH: the driver and vLLM's workers import this checkout's engine, not an installed one.
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": path}
        # vLLM's engine core and model runner in the driver's own process (the `uni` executor):
        # two process starts fewer per run, about 20 s each on a busy 2-core host; one thread, as
        # vLLM's CPU binding gave the worker process.
        env |= {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
        with log.open("w") as sink:
            proc = subprocess.Popen(
                cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                code = proc.wait(timeout=VLLM_TIMEOUT_S)
            finally:
                _kill_group(proc.pid)
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            pytest.fail(f"vLLM run {name!r} exited {code}; log {log}:\n{tail}")
        return {run: json.loads(out.read_text()) for run, out in outs.items()}


def _settle(report: Future[dict[str, Any]], plan: Future[dict[str, dict[str, Any]]], name: str) -> None:
    """Passes one run's report (or the plan's failure) from its plan's future to its own."""
    if plan.cancelled():
        report.cancel()
        return
    error = plan.exception()
    if error is not None:
        report.set_exception(error)
    else:
        report.set_result(plan.result()[name])


@pytest.fixture(scope="session")
def run_vllm(
    gla_swa_checkpoint: Path, prompts: list[list[int]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmRunner]:
    if os.environ.get("TANTRA_SKIP_VLLM"):
        pytest.skip("TANTRA_SKIP_VLLM is set")
    pytest.importorskip("vllm")
    runner = VllmRunner(gla_swa_checkpoint, prompts, tmp_path_factory.mktemp("vllm-runs"))
    yield runner
    runner.close()


@pytest.fixture(scope="module", autouse=True)
def _runs_begin_together(request: pytest.FixtureRequest) -> None:
    """Begin, in the order the selected tests first need them, the module's vLLM runs: its fixtures
    named `*_started` (each returns `run_vllm.start(...)`)."""
    if os.environ.get("TANTRA_SKIP_VLLM"):
        return
    names: dict[str, None] = {}
    for item in request.session.items:
        if getattr(item, "module", None) is request.module:
            names.update(
                dict.fromkeys(n for n in getattr(item, "fixturenames", ()) if n.endswith("_started"))
            )
    for name in names:
        request.getfixturevalue(name)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
