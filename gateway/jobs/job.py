"""`Job`: what a handler is given for one run of its job.

A handler reads `payload` and the last `checkpoint`, does its work in steps, and records each step
with the progress it marks done in one transaction:

    async def handle(job: Job) -> dict:
        done = (job.checkpoint or {}).get("next", 0)
        for index in range(done, len(items)):
            job.check()                          # cancelled? replica stopping? lease lost?
            async with job.turn():               # a background slot (see pacer.py)
                answer = await work(items[index])
            async with job.transaction() as step:
                step.session.add(OutputLine(job_id=job.id, index=index, body=answer))
                step.checkpoint({"next": index + 1})
        return {"lines": len(items)}

The transaction commits only while the run holds the job's lease (`LeaseLost` otherwise, with
nothing written), so each step's output is recorded by exactly one run: a run that crashes after
the commit resumes after that step; one that crashes before it redoes the step from scratch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.jobs.pacer import Pacer
from gateway.jobs.queue import JobQueue
from gateway.jobs.records import JobCancelled, JobRecord, JobStopping, LeaseLost


class Step:
    """One transaction of a run: the handler's writes go through `session`; `checkpoint(state)`
    stores the progress they complete, in the same commit."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.state: dict[str, Any] | None = None
        self.payload: dict[str, Any] | None = None

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.state = state

    def replace_payload(self, payload: dict[str, Any]) -> None:
        """Store `payload` in place of the job's, in the same commit (a background response's prompt
        redacted once it is no longer needed); the running handler keeps reading the one it was given."""
        self.payload = payload


class Job:
    def __init__(
        self, record: JobRecord, token: str, queue: JobQueue, *, lease_s: float, pacer: Pacer
    ) -> None:
        self.record = record
        self.token = token
        self.checkpoint: dict[str, Any] | None = record.checkpoint
        self._queue = queue
        self._lease_s = lease_s
        self._pacer = pacer
        self.cancel_requested = record.cancel_requested
        self.stop_requested = False
        self.lost = False
        # Set when the handler should wind down: cancellation, the replica stopping, the lease lost.
        self.interrupted = asyncio.Event()
        if self.cancel_requested:
            self.interrupted.set()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def tenant_id(self) -> str | None:
        return self.record.tenant_id

    @property
    def created_by(self) -> str | None:
        return self.record.created_by

    @property
    def user(self) -> str | None:
        return self.record.user

    @property
    def payload(self) -> dict[str, Any]:
        return self.record.payload

    @property
    def attempt(self) -> int:
        """1 on the first run; a graceful release does not count."""
        return self.record.attempts

    def check(self) -> None:
        """Raise what the handler should stop for: `LeaseLost`, `JobStopping` (the replica is
        shutting down: the job goes back to the queue), `JobCancelled`. A handler that wants to
        finish something on cancellation (a batch's partial output) catches `JobCancelled`, does
        it, and raises `JobCancelled(result)` itself."""
        if self.lost:
            raise LeaseLost(self.id)
        if self.stop_requested:
            raise JobStopping(self.id)
        if self.cancel_requested:
            raise JobCancelled()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Step]:
        """A transaction that commits only while this run holds the job; what `step.checkpoint` was
        given becomes `job.checkpoint` once committed."""
        if self.lost:
            raise LeaseLost(self.id)
        async with self._queue.db.session() as session, session.begin():
            step = Step(session)
            yield step
            try:
                await self._queue.fence(
                    session, self.id, self.token, self._lease_s, step.state, payload=step.payload
                )
            except LeaseLost:
                self.lose()
                raise
        if step.state is not None:
            self.checkpoint = step.state

    async def save(self, state: dict[str, Any]) -> None:
        """A checkpoint with no other write."""
        async with self.transaction() as step:
            step.checkpoint(state)

    def turn(self) -> AbstractAsyncContextManager[None]:
        """A background slot for one unit of engine work, waiting while interactive traffic is high."""
        return self._pacer.turn()

    # Set by the runner ---------------------------------------------------------------------------

    def request_cancel(self) -> None:
        self.cancel_requested = True
        self.interrupted.set()

    def request_stop(self) -> None:
        self.stop_requested = True
        self.interrupted.set()

    def lose(self) -> None:
        self.lost = True
        self.interrupted.set()
