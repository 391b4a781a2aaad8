"""A batch's run, as a job of the durable runner (docs/jobs.md, docs/batches.md).

validating: the input file is read and checked line by line as OpenAI checks it (JSON, a unique
`custom_id`, `method` POST, `url` the batch's endpoint, a `body` object); any problem fails the
batch with `errors.data[{code, message, line}]`. in_progress: the lines are sent, a step of them at
a time, each a request of the gateway's own endpoint made in process (`Loopback`, as a realtime
session's model calls) as the key that created the batch, in a background slot (`job.turn()`), at
the batch price factor, with vLLM's `priority` when the operator set one. Each step's answers are
written as `batch_lines` rows in the transaction of the job's checkpoint: a line is in the output
exactly once, however often a crash makes it be sent again (its ledger row is keyed by the batch and
the line, so it is recorded once too). finalizing: the output and error files are assembled from
those rows, under ids and blob keys fixed by the batch, and stored through the Files API's store.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp

from gateway.admission.internal import ACTING_AS, InternalCall
from gateway.blobs import BlobStore
from gateway.jobs import Job, JobCancelled, JobFailed, JobStopping, LeaseLost
from gateway.realtime.loopback import Loopback, read_all
from gateway.services.batch_input import InputProblem, Line, parse
from gateway.services.batch_input import error as input_error
from gateway.services.batch_quota import BatchQuota, input_tokens
from gateway.services.stored import ANONYMOUS_TENANT
from gateway.store import FileStore, utcnow
from gateway.store.batches import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINAL,
    FINALIZING,
    IN_PROGRESS,
    Batch,
    BatchLine,
    BatchStore,
    enter,
)
from gateway.store.file_models import StoredFile
from gateway.store.files import PROCESSED

# A batch answers each line in one JSON body: these would make it an event stream or a queued
# background response (OpenAI's batch takes neither).
_UNBATCHABLE = ("stream", "background")


@dataclass(frozen=True)
class BatchOptions:
    price_factor: float = 0.5
    engine_priority: int = 0
    lines_per_step: int = 8
    # TANTRA_BATCH_TOKEN_QUOTA: the batch token quota of keys without their own; 0: none.
    token_quota: int = 0


class BatchWork:
    """The handler of the `batch` job kind. `bind(app)` hands it the app its lines are sent to."""

    def __init__(self, store: BatchStore, files: FileStore, blobs: BlobStore, options: BatchOptions) -> None:
        self._store = store
        self._files = files
        self._blobs = blobs
        self._options = options
        self._quota = BatchQuota(options.token_quota)
        self._app: ASGIApp | None = None

    def bind(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, job: Job) -> dict[str, Any]:
        try:
            return await self._work(job)
        except (JobCancelled, JobStopping, LeaseLost):
            raise
        except Exception as error:
            # The runner retries other failures; after the last attempt the batch itself must end
            # `failed` (as OpenAI's do), or it would show `validating`/`in_progress` forever.
            if isinstance(error, JobFailed) or job.attempt >= job.record.max_attempts:
                await self._give_up(job, error)
            raise

    async def _give_up(self, job: Job, error: Exception) -> None:
        """End the batch `failed` with what was answered in its files; with no files if even that fails
        (an unreachable blob store, say)."""
        batch_id = job.payload["batch_id"]
        problem = input_error("batch_failed", f"The batch could not be processed: {type(error).__name__}.")
        async with job.transaction() as step:
            row = await self._store.by_id(step.session, batch_id)
            if row.status in FINAL:
                return
            row.errors = [*(row.errors or []), problem]
        try:
            await self._finish(job, batch_id, FAILED, [])
        except Exception:
            async with job.transaction() as step:
                enter(await self._store.by_id(step.session, batch_id), FAILED, utcnow())
                step.checkpoint({"next": 0, "done": True})

    async def _work(self, job: Job) -> dict[str, Any]:
        batch_id = job.payload["batch_id"]
        batch = await self._load(batch_id)
        if batch.status in FINAL:
            return {"status": batch.status}
        try:
            lines = parse(await self._input(batch), batch.endpoint)
        except InputProblem as problem:
            async with job.transaction() as step:
                row = await self._store.by_id(step.session, batch_id)
                row.errors = problem.errors
                enter(row, FAILED, utcnow())
                step.checkpoint({"next": 0, "done": True})
            return {"status": FAILED}
        if batch.status != IN_PROGRESS and batch.in_progress_at is None and not await self._start(job, lines):
            return {"status": FAILED}
        return await self._run(job, batch, lines)

    async def _start(self, job: Job, lines: list[Line]) -> bool:
        """in_progress, its input tokens enqueued; or failed (False) when they would take its key or
        tenant over the batch token quota (gateway/services/batch_quota.py)."""
        tokens = input_tokens(line.body for line in lines)
        async with job.transaction() as step:
            row = await self._store.by_id(step.session, job.payload["batch_id"])
            refusal = await self._quota.refusal(step.session, row, tokens)
            if refusal is not None:
                row.errors = [refusal]
                enter(row, FAILED, utcnow())
                step.checkpoint({"next": 0, "done": True})
                return False
            row.total = len(lines)
            row.enqueued_tokens = tokens
            enter(row, IN_PROGRESS, utcnow())
            step.checkpoint({"next": 0})
        return True

    async def _run(self, job: Job, batch: Batch, lines: list[Line]) -> dict[str, Any]:
        done = int((job.checkpoint or {}).get("next", 0))
        step_size = self._options.lines_per_step
        try:
            while done < len(lines):
                job.check()
                if utcnow() >= batch.expires_at:
                    return await self._finish(job, batch.id, EXPIRED, lines[done:])
                chunk = lines[done : done + step_size]
                answers = await asyncio.gather(
                    *(self._answer(job, batch, line) for line in chunk), return_exceptions=True
                )
                if job.interrupted.is_set():
                    # Cancelled, stopping or taken over mid-step: the step's lines were cut off (their
                    # requests disconnected), so none is recorded; a resumed run sends them again.
                    job.check()
                done += len(chunk)
                await self._record(job, batch.id, [_answered(answer) for answer in answers], done)
        except JobCancelled:
            raise JobCancelled(await self._finish(job, batch.id, CANCELLED, [])) from None
        return await self._finish(job, batch.id, COMPLETED, [])

    async def _record(self, job: Job, batch_id: str, answers: list[tuple[int, bool, str]], done: int) -> None:
        """One step's answers and the checkpoint after them, in one commit."""
        async with job.transaction() as step:
            row = await self._store.by_id(step.session, batch_id)
            for number, ok, text in answers:
                step.session.add(BatchLine(batch_id=batch_id, line=number, ok=ok, text=text))
                if ok:
                    row.completed += 1
                else:
                    row.failed += 1
            step.checkpoint({"next": done})

    async def _answer(self, job: Job, batch: Batch, line: Line) -> tuple[int, bool, str]:
        """One line through the gateway's own endpoint, as the batch's key: its output file line."""
        request_id = f"{batch.id}-{line.number}"
        refused = next((name for name in _UNBATCHABLE if line.body.get(name)), None)
        if refused is not None:
            error = {
                "message": f"`{refused}` is not supported in batch requests.",
                "type": "invalid_request_error",
                "param": refused,
                "code": "unsupported_parameter",
            }
            return line.number, False, _line(batch.id, line, 400, request_id, {"error": error})
        body = line_body(batch.endpoint, line.body, self._options.engine_priority)
        marks = {ACTING_AS: InternalCall(batch.created_by, request_id, self._options.price_factor)}
        assert self._app is not None, "BatchWork.bind(app) was not called"
        loopback = Loopback(self._app, {"type": "http", "scheme": "http"}, {})
        async with (
            job.turn(),
            loopback.post(batch.endpoint, orjson.dumps(body), job.interrupted, marks=marks) as response,
        ):
            raw = await read_all(response.chunks)
            status = response.status
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = {"error": {"message": "The endpoint's answer was not JSON.", "type": "server_error"}}
            status = status if status >= 400 else 500
        return line.number, status < 400, _line(batch.id, line, status, request_id, answer)

    async def _finish(self, job: Job, batch_id: str, status: str, left: list[Line]) -> dict[str, Any]:
        """Write the output and error files from the recorded lines (the lines `left` unanswered by
        an expiry as `batch_expired` errors) and end the batch with `status`."""
        async with job.transaction() as step:
            row = await self._store.by_id(step.session, batch_id)
            if status == COMPLETED:
                enter(row, FINALIZING, utcnow())
            step.checkpoint({"next": (job.checkpoint or {}).get("next", 0), "finalizing": True})
        batch = await self._load(batch_id)
        expired = [_expired_line(batch_id, line) for line in left]
        output = await self._file(batch, "output", await self._store.lines(batch_id, ok=True))
        errors = await self._file(batch, "error", [*await self._store.lines(batch_id, ok=False), *expired])
        async with job.transaction() as step:
            row = await self._store.by_id(step.session, batch_id)
            for stored in (output, errors):
                if stored is not None and await step.session.get(StoredFile, stored.id) is None:
                    step.session.add(stored)
            row.output_file_id = output.id if output else None
            row.error_file_id = errors.id if errors else None
            row.failed += len(expired)
            enter(row, status, utcnow())
            step.checkpoint({"next": row.total, "done": True})
        return {"status": status}

    async def _file(self, batch: Batch, kind: str, lines: list[str]) -> StoredFile | None:
        """The file of `lines` (none when there are none) under an id and blob key fixed by the
        batch: a finalizing that a crash makes run again overwrites the same blob."""
        if not lines:
            return None
        tenant = batch.tenant_id or ANONYMOUS_TENANT
        file_id = "file-" + hashlib.sha256(f"{batch.id}/{kind}".encode()).hexdigest()[:24]
        key = f"batches/{tenant}/{batch.id}/{kind}.jsonl"
        size = await self._blobs.put(key, _chunks(lines))
        return StoredFile(
            id=file_id,
            tenant_id=tenant,
            created_by=batch.created_by,
            user=batch.end_user,
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            bytes=size,
            content_type="application/jsonl",
            blob_key=key,
            status=PROCESSED,
            created_at=utcnow(),
        )

    async def _load(self, batch_id: str) -> Batch:
        async with self._store.db.session() as session:
            return await self._store.by_id(session, batch_id)

    async def _input(self, batch: Batch) -> bytes:
        tenant = batch.tenant_id or ANONYMOUS_TENANT
        found = await self._files.get_file(tenant, batch.input_file_id, utcnow())
        if found is None:
            raise InputProblem(
                [input_error("file_not_found", f"The input file {batch.input_file_id} is gone.")]
            )
        # Held whole: the lines are re-read at each run, and a batch's file is bounded by the
        # Files API's per-file cap (TANTRA_FILES_MAX_FILE_BYTES).
        return b"".join([chunk async for chunk in self._blobs.get(found.blob_key)])


def line_body(endpoint: str, body: dict[str, Any], priority: int) -> dict[str, Any]:
    """What a line sends its endpoint: the operator's engine priority when it has none, and for
    /v1/responses `store: false` unless it says otherwise (as OpenAI's batch: a batch's responses
    are in its output file, not kept as responses)."""
    sent = dict(body)
    if priority and "priority" not in sent:
        sent["priority"] = priority
    if endpoint == "/v1/responses":
        sent.setdefault("store", False)
    return sent


def _answered(answer: tuple[int, bool, str] | BaseException) -> tuple[int, bool, str]:
    if isinstance(answer, BaseException):
        raise answer  # the run fails and is retried from its checkpoint
    return answer


def request_line_id(batch_id: str, number: int) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}/{number}".encode()).hexdigest()[:32]


def _line(batch_id: str, line: Line, status: int, request_id: str, body: Any) -> str:
    """OpenAI's output (or error) file line."""
    error = None
    if status >= 400:
        detail = body.get("error") if isinstance(body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        error = {
            "code": detail.get("code") or detail.get("type") or str(status),
            "message": detail.get("message", ""),
        }
    return orjson.dumps(
        {
            "id": request_line_id(batch_id, line.number),
            "custom_id": line.custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body},
            "error": error,
        }
    ).decode()


def _expired_line(batch_id: str, line: Line) -> str:
    return orjson.dumps(
        {
            "id": request_line_id(batch_id, line.number),
            "custom_id": line.custom_id,
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window expired.",
            },
        }
    ).decode()


async def _chunks(lines: Iterable[str]) -> AsyncIterator[bytes]:
    for text in lines:
        yield text.encode() + b"\n"
