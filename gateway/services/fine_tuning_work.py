"""A fine-tuning job's run, as a job of the durable runner (docs/jobs.md, docs/fine-tuning.md).

validating_files: the training (and validation) file is read from the Files API's blob store and
checked line by line (`check_lines`, OpenAI's messages); a bad file fails the job. queued: the run
waits for the machine's training slot (a lock file: one trainer per machine by default, whatever
the number of replicas). running: the trainer runs as its own niced process (`python -m engine
finetune`: torch and PEFT live there, never in the gateway), its JSON progress lines become the
job's events (loss per step). succeeded: the adapter (PEFT's adapter_config.json and
adapter_model.safetensors) is stored in the blob store under the job's id, the job names its model
`ft:<base>:<tenant>:<suffix>:<id>`, and the training tokens go to the ledger, priced as the base
model's prompt tokens times TANTRA_FINE_TUNING_PRICE_FACTOR.

A run that dies is retried from the start (training is not resumable here: a tiny adapter trains in
a minute); its subprocess is killed with its process group when the job is cancelled or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.blobs import BlobStore
from gateway.jobs import Job, JobCancelled, JobFailed
from gateway.limits.accounting import Accountant
from gateway.protocol.fine_tuning import FINAL
from gateway.protocol.fine_tuning_file import check_lines
from gateway.services.fine_tuning import JOB_PREFIX, add_event
from gateway.services.stored import ANONYMOUS_TENANT
from gateway.store import FileStore, utcnow
from gateway.store.fine_tuning import FineTuningJobRow, FineTuningStore

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LEDGER_ENDPOINT = "/v1/fine_tuning/jobs"


@dataclass(frozen=True)
class TrainerOptions:
    """How the trainer runs (TANTRA_FINE_TUNING_*)."""

    bases: dict[str, str]  # served base model -> its checkpoint directory
    work_dir: Path
    # The bases whose route accepts images (`accepts`): their training lines may carry image parts.
    image_bases: frozenset[str] = frozenset()
    learning_rate: float = 2e-3
    rank: int = 8
    threads: int = 1
    nice: int = 10
    timeout_s: float = 3600.0
    price_factor: float = 1.0
    python: str = field(default=sys.executable)


def adapter_key(job_id: str, name: str) -> str:
    return f"fine-tuning/{job_id}/{name}"


def model_name(row: FineTuningJobRow) -> str:
    """OpenAI's naming: ft:<base>:<organization>:<suffix>:<id> (the suffix empty when none)."""
    tenant = row.tenant_id or ANONYMOUS_TENANT
    return f"ft:{row.model}:{tenant}:{row.suffix or ''}:{row.id.removeprefix(JOB_PREFIX)[:8]}"


class FineTuningWork:
    def __init__(
        self,
        store: FineTuningStore,
        files: FileStore,
        blobs: BlobStore,
        accountant: Accountant | None,
        options: TrainerOptions,
    ) -> None:
        self._store = store
        self._files = files
        self._blobs = blobs
        self._accountant = accountant
        self._options = options

    async def __call__(self, job: Job) -> dict[str, Any]:
        job_id = str(job.payload["job_id"])
        async with self._store.db.session() as session:
            row = await self._store.by_id(session, job_id)
        if row is None or row.status in FINAL:
            return {"status": row.status if row is not None else "deleted"}
        workdir = self._options.work_dir / "jobs" / job_id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            try:
                examples = await self._validate(job, row, workdir)
            except JobFailed as problem:
                await self._end(job, job_id, "failed", str(problem), error=_file_error(str(problem)))
                return {"status": "failed"}
            await self._move(job, job_id, "queued", "Files validated, moving job to queued state", examples)
            async with self._training_slot(job):
                await self._move(job, job_id, "running", "Fine-tuning job started")
                metrics = await self._train(job, row, workdir)
            return await self._succeed(job, row, workdir, metrics)
        except JobCancelled:
            await self._end(job, job_id, "cancelled", "Fine-tuning job cancelled")
            raise
        finally:
            shutil.rmtree(workdir / "data", ignore_errors=True)

    async def _validate(self, job: Job, row: FineTuningJobRow, workdir: Path) -> int:
        (workdir / "data").mkdir()
        method = str(row.method["type"])
        examples = 0
        for param, file_id in (
            ("training_file", row.training_file),
            ("validation_file", row.validation_file),
        ):
            if file_id is None:
                continue
            found = await self._files.get_file(row.tenant_id or ANONYMOUS_TENANT, file_id, utcnow())
            if found is None:
                raise JobFailed(f"The {param} {file_id} is gone.")
            data = b"".join([chunk async for chunk in self._blobs.get(found.blob_key)])
            count, problems = check_lines(
                data.decode("utf-8", errors="replace"), method, images=row.model in self._options.image_bases
            )
            if problems and (param == "training_file" or count):
                raise JobFailed(
                    f"The job failed due to an invalid {param.replace('_', ' ')}. " + "; ".join(problems)
                )
            (workdir / "data" / f"{param}.jsonl").write_bytes(data)
            examples = examples or count
        job.check()
        return examples

    @contextlib.asynccontextmanager
    async def _training_slot(self, job: Job) -> AsyncIterator[None]:
        """One trainer per machine: an exclusive lock on a file beside the work directories (released
        by the kernel if this process dies)."""
        path = self._options.work_dir / "trainer.lock"  # made by the run (read-only images start fine)
        with path.open("a") as handle:
            while True:
                job.check()
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(1.0)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _command(self, row: FineTuningJobRow, workdir: Path) -> list[str]:
        options = self._options
        kind = str(row.method["type"])
        hyper = row.method[kind]["hyperparameters"]
        command = [
            "nice", "-n", str(options.nice), options.python, "-m", "engine", "finetune",
            "--base", options.bases[row.model],
            "--train", str(workdir / "data" / "training_file.jsonl"),
            "--out", str(workdir / "adapter"),
            "--method", kind,
            "--epochs", str(int(hyper["n_epochs"])),
            "--batch-size", str(int(hyper["batch_size"])),
            "--learning-rate", str(options.learning_rate * float(hyper["learning_rate_multiplier"])),
            "--rank", str(options.rank),
            "--seed", str(row.seed),
            "--threads", str(options.threads),
        ]  # fmt: skip
        if kind == "dpo":
            command += ["--beta", str(float(hyper["beta"]))]
        if row.validation_file is not None:
            command += ["--validation", str(workdir / "data" / "validation_file.jsonl")]
        return command

    async def _train(self, job: Job, row: FineTuningJobRow, workdir: Path) -> dict[str, Any]:
        process = await asyncio.create_subprocess_exec(
            *self._command(row, workdir),
            stdout=asyncio.subprocess.PIPE,
            stderr=(workdir / "trainer.log").open("wb"),
            start_new_session=True,
        )
        assert process.stdout is not None
        done: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self._options.timeout_s):
                while line := await _next_line(process.stdout, job):
                    event = json.loads(line)
                    if event.get("type") == "done":
                        done = event
                    elif event.get("type") == "step":
                        await self._step(job, row.id, event)
                code = await process.wait()
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if code != 0 or done is None:
            tail = (workdir / "trainer.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the trainer exited with code {code}: " + " | ".join(tail))
        return done

    async def _step(self, job: Job, job_id: str, event: dict[str, Any]) -> None:
        step, total, loss = int(event["step"]), int(event["total_steps"]), float(event["train_loss"])
        data = {"step": step, "total_steps": total, "train_loss": loss, "epoch": event.get("epoch")}
        async with job.transaction() as txn:
            add_event(txn.session, job_id, f"Step {step}/{total}: training loss={loss:.4f}", data=data)
            txn.checkpoint({"phase": "running", "step": step})

    async def _succeed(
        self, job: Job, row: FineTuningJobRow, workdir: Path, metrics: dict[str, Any]
    ) -> dict[str, Any]:
        for name in ADAPTER_FILES:
            await self._blobs.put(adapter_key(row.id, name), _read(workdir / "adapter" / name))
        name = model_name(row)
        tokens = int(metrics.get("trained_tokens", 0))
        kept: dict[str, Any] = {
            k: metrics[k] for k in ("step", "train_loss", "valid_loss", "seconds") if k in metrics
        }
        async with job.transaction() as txn:
            fresh = await self._store.by_id(txn.session, row.id)
            assert fresh is not None
            fresh.fine_tuned_model, fresh.adapter_key = name, adapter_key(row.id, "")
            fresh.trained_tokens, fresh.metrics = tokens, kept
            fresh.status, fresh.finished_at = "succeeded", utcnow()
            add_event(txn.session, row.id, f"New fine-tuned model created: {name}")
            add_event(txn.session, row.id, "The job has successfully completed")
            txn.checkpoint({"phase": "succeeded"})
        self._bill(row, tokens)
        shutil.rmtree(workdir, ignore_errors=True)
        return {"status": "succeeded", "fine_tuned_model": name, **kept}

    def _bill(self, row: FineTuningJobRow, tokens: int) -> None:
        """One ledger row for the job's training tokens (keyed by the job: recorded once)."""
        if self._accountant is None:
            return
        tab = self._accountant.open(
            tenant_id=row.tenant_id, key_id=row.created_by, endpoint=LEDGER_ENDPOINT, request_id=row.id
        )
        tab.model = row.model
        tab.price_factor = self._options.price_factor
        tab.close(status=200, outcome="ok", usage={"prompt_tokens": tokens, "completion_tokens": 0})

    async def _move(self, job: Job, job_id: str, status: str, message: str, examples: int = 0) -> None:
        async with job.transaction() as txn:
            row = await self._store.by_id(txn.session, job_id)
            if row is None or row.status in FINAL:
                raise JobCancelled({"status": row.status if row else "deleted"})
            row.status = status
            if examples:
                add_event(txn.session, job_id, f"Training file has {examples} examples")
            add_event(txn.session, job_id, message)
            txn.checkpoint({"phase": status})

    async def _end(
        self, job: Job, job_id: str, status: str, message: str, *, error: dict[str, Any] | None = None
    ) -> None:
        async with job.transaction() as txn:
            row = await self._store.by_id(txn.session, job_id)
            if row is not None and row.status not in FINAL:
                row.status, row.finished_at, row.error = status, utcnow(), error
                add_event(txn.session, job_id, message, level="error" if error else "info")
            elif row is not None and status == "cancelled":
                add_event(txn.session, job_id, "The trainer was stopped")
            txn.checkpoint({"phase": status})


def _file_error(message: str) -> dict[str, Any]:
    return {"code": "invalid_training_file", "message": message, "param": "training_file"}


async def _next_line(stream: asyncio.StreamReader, job: Job) -> bytes:
    """The trainer's next progress line, or b"" at its end; raises what `job.check()` raises as soon
    as the job is interrupted (cancelled, stopping, lease lost) rather than at the next line."""
    reading = asyncio.ensure_future(stream.readline())
    interrupted = asyncio.ensure_future(job.interrupted.wait())
    try:
        await asyncio.wait({reading, interrupted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        interrupted.cancel()
    if not reading.done():
        reading.cancel()
        job.check()
    return reading.result().strip() if reading.done() else b""


async def _read(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


Bases = Callable[[], set[str]]
