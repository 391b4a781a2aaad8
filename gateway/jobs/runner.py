"""`JobRunner`: the replica's side of the durable jobs. Features register a handler per job kind
and submit jobs; every replica whose runner is on claims due jobs from the SQL store, runs each
under a lease it renews, and records how the run ended.

Why a table and not a queue library (arq, Celery, RQ on Redis): the jobs' progress must commit in
the same transaction as their output (a batch's answered lines), which only a queue inside the
SQL store allows; Redis here holds rate limits and is not configured to be durable; and the
table is queryable by tenant and user for the API's retrieve and list, and for erasure. The
lease-and-claim mechanics are a few statements (queue.py), not worth a second datastore.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.jobs.job import Job
from gateway.jobs.pacer import Pacer
from gateway.jobs.queue import JobQueue
from gateway.jobs.records import (
    JobCancelled,
    JobFailed,
    JobOptions,
    JobRecord,
    JobStopping,
    LeaseLost,
    UnknownJobKind,
)

_log = logging.getLogger("tantra.jobs")
_tracer = trace.get_tracer("tantra.jobs")

Handler = Callable[[Job], Awaitable[Any]]


@dataclass(frozen=True)
class RunnerPolicy:
    concurrency: int = 2
    lease_s: float = 30.0
    # How often an idle runner claims: a local submit or a run's end wakes it at once, so the poll
    # only finds other replicas' jobs and retries come due. Each claim costs ~2 ms of CPU, 40% of
    # an idle gateway's at 1 s (docs/performance.md, round 3).
    poll_s: float = 5.0
    max_attempts: int = 3
    retry_backoff_s: float = 10.0
    stop_grace_s: float = 10.0


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    # Unset: the runner's policy.
    max_attempts: int | None
    priority: int
    # Runs of this kind at once on one replica; unset: as many as the runner's concurrency.
    concurrency: int | None = None


@dataclass(eq=False)
class _Run:
    job: Job
    task: asyncio.Task[None]
    work: asyncio.Task[Any] | None = None


class JobRunner:
    """Submitting works on every replica; running only where `enabled` (TANTRA_JOBS_ENABLED).
    `draining` says the replica began its graceful stop: running jobs are asked to stop (they
    checkpoint and give their lease back) and no more are claimed."""

    def __init__(
        self,
        queue: JobQueue,
        policy: RunnerPolicy,
        *,
        pacer: Pacer | None = None,
        enabled: bool = True,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.queue = queue
        self.policy = policy
        self.pacer = pacer or Pacer(policy.concurrency)
        self.enabled = enabled
        self._draining = draining
        self.kinds: dict[str, JobKind] = {}
        # host:pid:random, one per runner; each run's lease token adds its own random part.
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        self._runs: dict[str, _Run] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None
        self._next_sweep = 0.0

    # Features' side ----------------------------------------------------------------------------

    def register(
        self,
        kind: str,
        handler: Handler,
        *,
        max_attempts: int | None = None,
        priority: int = 0,
        concurrency: int | None = None,
    ) -> None:
        """The handler of every job of `kind`, registered where the feature is built (in `build`):
        its runs may land on any replica, so every replica registers the same kinds; a replica
        claims only the kinds it knows. `concurrency` caps this kind's runs on the replica below
        the runner's own, so that long jobs (batches) leave slots to short ones (background
        responses)."""
        if kind in self.kinds:
            raise ValueError(f"job kind {kind!r} is registered already")
        self.kinds[kind] = JobKind(kind, handler, max_attempts, priority, concurrency)

    async def submit(
        self,
        kind: str,
        tenant_id: str | None,
        payload: dict[str, Any],
        *,
        created_by: str | None = None,
        user: str | None = None,
        options: JobOptions | None = None,
        session: AsyncSession | None = None,
    ) -> JobRecord:
        """Queue a job of a registered kind (`UnknownJobKind` otherwise). Given `session`, the job
        is committed with the caller's own writes, by the caller."""
        registered = self.kinds.get(kind)
        if registered is None:
            raise UnknownJobKind(f"no handler is registered for job kind {kind!r}")
        given = options or JobOptions()
        resolved = replace(
            given,
            priority=registered.priority if given.priority is None else given.priority,
            max_attempts=given.max_attempts or registered.max_attempts or self.policy.max_attempts,
        )
        record = await self.queue.submit(
            kind, tenant_id, payload, created_by=created_by, user=user, options=resolved, session=session
        )
        self._wake.set()
        return record

    async def get(self, job_id: str, *, tenant_id: str | None = None) -> JobRecord | None:
        return await self.queue.get(job_id, tenant_id=tenant_id)

    async def cancel(self, job_id: str, *, tenant_id: str | None = None) -> JobRecord | None:
        """Request cancellation (see `JobQueue.request_cancel`); seen at once when the job runs here."""
        record = await self.queue.request_cancel(job_id, tenant_id=tenant_id)
        run = self._runs.get(job_id)
        if record is not None and record.cancel_requested and run is not None:
            run.job.request_cancel()
        return record

    @property
    def running(self) -> list[Job]:
        return [run.job for run in self._runs.values()]

    # The lifespan ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled and self._loop is None:
            self._loop = asyncio.create_task(self._claim_loop(), name="job-runner")

    async def stop(self) -> None:
        """Graceful: claim no more; ask running jobs to stop, wait up to the grace for them to
        checkpoint and give their lease back, then interrupt the rest (their open transaction rolls
        back) and give theirs back too."""
        self._begin_stop()
        if self._loop is not None:
            # A claim under way completes (and gives its job back) rather than being cut mid-commit.
            _, late = await asyncio.wait([self._loop], timeout=self.policy.lease_s)
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        runs = [run.task for run in self._runs.values()]
        if runs:
            _, late = await asyncio.wait(runs, timeout=self.policy.stop_grace_s)
            for run in list(self._runs.values()):
                if run.work is not None:
                    run.work.cancel()
            if late:
                await asyncio.wait(late, timeout=self.policy.lease_s)

    def _begin_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        for run in self._runs.values():
            run.job.request_stop()

    # Claiming ----------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            if self._draining():
                self._begin_stop()
                break
            try:
                await self._claim_due()
            except Exception:
                _log.warning("job runner: the store did not answer the claim", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.policy.poll_s)
            self._wake.clear()

    async def _claim_due(self) -> None:
        if self.kinds and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.policy.lease_s
            failed = await self.queue.fail_abandoned(list(self.kinds))
            if failed:
                _log.warning("job runner: %d jobs failed, their replica died on every attempt", failed)
        while len(self._runs) < self.policy.concurrency and not self._stopping:
            kinds = self._claimable_kinds()
            if not kinds:
                return
            token = f"{self.name}:{secrets.token_hex(6)}"
            record = await self.queue.claim(token, kinds, self.policy.lease_s)
            if record is None:
                return
            if self._stopping:
                await self.queue.release(record.id, token)
                return
            job = Job(record, token, self.queue, lease_s=self.policy.lease_s, pacer=self.pacer)
            task = asyncio.create_task(self._run(job), name=f"job-{record.id}")
            self._runs[record.id] = _Run(job, task)
            task.add_done_callback(functools.partial(self._finished, record.id))

    def _claimable_kinds(self) -> list[str]:
        """The registered kinds with a free slot of their own on this replica."""
        running: dict[str, int] = {}
        for run in self._runs.values():
            running[run.job.kind] = running.get(run.job.kind, 0) + 1
        return [
            name
            for name, kind in self.kinds.items()
            if kind.concurrency is None or running.get(name, 0) < kind.concurrency
        ]

    def _finished(self, job_id: str, _: asyncio.Task[None]) -> None:
        self._runs.pop(job_id, None)
        self._wake.set()

    # Running -----------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        run = self._runs[job.id]
        run.work = asyncio.create_task(self._work(job), name=f"job-work-{job.id}")
        beat = asyncio.create_task(self._heartbeat(job, run.work), name=f"job-lease-{job.id}")
        try:
            await asyncio.wait([run.work])
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        try:
            await self._record_end(job, run.work)
        except Exception:
            # The lease runs out and another replica takes the job over from its checkpoint.
            _log.warning("job %s: its end could not be recorded", job.id, exc_info=True)

    async def _work(self, job: Job) -> Any:
        attributes: dict[str, str | int] = {
            "job.id": job.id,
            "job.kind": job.kind,
            "job.attempt": job.attempt,
        }
        with _tracer.start_as_current_span(f"job {job.kind}", attributes=attributes):
            return await self.kinds[job.kind].handler(job)

    async def _heartbeat(self, job: Job, work: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.policy.lease_s / 3)
            try:
                cancel_requested_at = await self.queue.renew(job.id, job.token, self.policy.lease_s)
            except LeaseLost:
                _log.warning("job %s: lease lost (another replica took it over); interrupting", job.id)
                job.lose()
                work.cancel()
                return
            except Exception:
                _log.warning("job %s: lease renewal failed; trying again", job.id, exc_info=True)
                continue
            if cancel_requested_at is not None and not job.cancel_requested:
                job.request_cancel()

    async def _record_end(self, job: Job, work: asyncio.Task[Any]) -> None:
        queue, token = self.queue, job.token
        failure = None if work.cancelled() else work.exception()
        if job.lost or isinstance(failure, LeaseLost):
            return
        if work.cancelled() or isinstance(failure, JobStopping):
            await queue.release(job.id, token)
            _log.info("job %s: given back at stop, resumes from its checkpoint", job.id)
        elif failure is None:
            await queue.finish(job.id, token, "completed", result=work.result())
        elif isinstance(failure, JobCancelled):
            await queue.finish(job.id, token, "cancelled", result=failure.result)
        elif isinstance(failure, JobFailed) or job.attempt >= job.record.max_attempts:
            await queue.finish(job.id, token, "failed", error=_describe(failure))
            _log.warning("job %s (%s) failed: %s", job.id, job.kind, failure)
        else:
            backoff = timedelta(seconds=self.policy.retry_backoff_s * 2 ** (job.attempt - 1))
            await queue.retry(job.id, token, error=_describe(failure), backoff=backoff)
            _log.warning(
                "job %s (%s) attempt %d failed, retried in %s: %s",
                job.id,
                job.kind,
                job.attempt,
                backoff,
                failure,
            )


def _describe(error: BaseException) -> str:
    if isinstance(error, JobFailed):
        return str(error)
    return "".join(traceback.format_exception_only(error)).strip()
