"""The `jobs` table's operations: submit, read, cancel, and a run's claim, lease renewal, fenced
checkpoints and its end. Every statement a run makes is conditioned on its lease token, so a run
whose lease was taken over writes nothing.

The claim is one statement, `UPDATE jobs ... WHERE id = (SELECT id ... LIMIT 1 FOR UPDATE SKIP
LOCKED) RETURNING ...`: on PostgreSQL concurrent claimers skip each other's locked rows instead of
queueing behind them; on SQLite (which has no row locks and drops the FOR UPDATE) the statement is
atomic because SQLite runs one writer at a time, so runners sharing a database file take turns and
never claim the same job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Update

from gateway.jobs.records import JobOptions, JobRecord, JobStatus, LeaseLost
from gateway.store.database import Database
from gateway.store.job_rows import JobRow
from gateway.store.repository import new_id, utcnow

_COLUMNS = tuple(JobRow.__table__.c)
_FIELDS = tuple(field.name for field in fields(JobRecord))
# The message a job failed with is kept whole up to this; a traceback's tail is what matters.
_MAX_ERROR_CHARS = 4000


def _record(row: Mapping[Any, Any]) -> JobRecord:
    return JobRecord(**{name: row[name] for name in _FIELDS})


class JobQueue:
    def __init__(self, database: Database) -> None:
        self.db = database

    # What API handlers call ---------------------------------------------------------------------

    async def submit(
        self,
        kind: str,
        tenant_id: str | None,
        payload: dict[str, Any],
        *,
        created_by: str | None = None,
        user: str | None = None,
        options: JobOptions,
        session: AsyncSession | None = None,
    ) -> JobRecord:
        """A queued job. Given `session`, the row joins that session's transaction (a batch and its
        job are committed together) and the caller commits; else it is committed here."""
        now = utcnow()
        row = JobRow(
            id=options.job_id or new_id("job"),
            kind=kind,
            tenant_id=tenant_id,
            created_by=created_by,
            user=user,
            status="queued",
            priority=options.priority or 0,
            payload=payload,
            checkpoint=None,
            result=None,
            attempts=0,
            max_attempts=options.max_attempts or 1,
            run_after=options.run_after or now,
            created_at=now,
            updated_at=now,
        )
        record = _record({name: getattr(row, name, None) for name in _FIELDS})
        if session is not None:
            session.add(row)
            return record
        async with self.db.session() as own, own.begin():
            own.add(row)
        return record

    async def get(self, job_id: str, *, tenant_id: str | None = None) -> JobRecord | None:
        """The job; None when it does not exist or, given `tenant_id`, belongs to another tenant."""
        query = select(*_COLUMNS).where(JobRow.id == job_id)
        if tenant_id is not None:
            query = query.where(JobRow.tenant_id == tenant_id)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _record(row) if row is not None else None

    async def list(
        self,
        *,
        tenant_id: str | None = None,
        kind: str | None = None,
        status: JobStatus | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Newest first."""
        query = select(*_COLUMNS).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
        for column, value in (
            (JobRow.tenant_id, tenant_id),
            (JobRow.kind, kind),
            (JobRow.status, status),
            (JobRow.user, user),
        ):
            if value is not None:
                query = query.where(column == value)
        async with self.db.engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).mappings()]

    async def request_cancel(self, job_id: str, *, tenant_id: str | None = None) -> JobRecord | None:
        """A queued job is cancelled at once; a running one is marked, and its handler sees the mark
        (at its runner's next renewal, or at once on the replica running it); a finished one is left
        as it is. None when there is no such job (for this tenant)."""
        now = utcnow()
        mine = [JobRow.id == job_id] + ([JobRow.tenant_id == tenant_id] if tenant_id is not None else [])
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(JobRow)
                .where(*mine, JobRow.status == "queued")
                .values(status="cancelled", cancel_requested_at=now, finished_at=now, updated_at=now)
            )
            await conn.execute(
                update(JobRow)
                .where(*mine, JobRow.status == "running", JobRow.cancel_requested_at.is_(None))
                .values(cancel_requested_at=now, updated_at=now)
            )
        return await self.get(job_id, tenant_id=tenant_id)

    async def delete(self, job_id: str, *, tenant_id: str | None = None) -> bool:
        """Remove the job (retention, erasure). A run of it still going loses its lease: its next
        checkpoint or renewal raises `LeaseLost` and nothing more of it is written."""
        statement = delete(JobRow).where(JobRow.id == job_id)
        if tenant_id is not None:
            statement = statement.where(JobRow.tenant_id == tenant_id)
        async with self.db.engine.begin() as conn:
            return (await conn.execute(statement.returning(JobRow.id))).first() is not None

    # What a runner calls ------------------------------------------------------------------------

    async def claim(self, token: str, kinds: Iterable[str], lease_s: float) -> JobRecord | None:
        """Take the most urgent job of `kinds` that is queued and due, or running under a lease that
        expired (its replica died) with attempts left; it becomes `running` under `token`."""
        statement = claim_statement(token, kinds, lease_s, utcnow())
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(statement)).mappings().first()
        return _record(row) if row is not None else None

    async def fail_abandoned(self, kinds: Iterable[str]) -> int:
        """Fail the running jobs whose lease expired with no attempt left: their replica died on
        each of them (a job that kills its replica every time must not kill them all in turn)."""
        now = utcnow()
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(JobRow)
                .where(
                    JobRow.kind.in_(list(kinds)),
                    JobRow.status == "running",
                    JobRow.lease_expires_at < now,
                    JobRow.attempts >= JobRow.max_attempts,
                )
                .values(
                    status="failed",
                    last_error="the replica running it stopped (its lease expired) on every attempt",
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
        return int(result.rowcount or 0)

    async def renew(self, job_id: str, token: str, lease_s: float) -> datetime | None:
        """Extend the lease; returns when cancellation was requested (None: not requested). Raises
        `LeaseLost` when the run no longer holds the job."""
        now = utcnow()
        statement = (
            _fenced(job_id, token)
            .values(lease_expires_at=now + timedelta(seconds=lease_s), updated_at=now)
            .returning(JobRow.cancel_requested_at)
        )
        async with self.db.engine.begin() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            raise LeaseLost(job_id)
        return row[0]

    async def fence(
        self,
        session: AsyncSession,
        job_id: str,
        token: str,
        lease_s: float,
        checkpoint: Any = None,
        *,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Inside the caller's transaction: renew the lease and, given one, store `checkpoint`. Raises
        `LeaseLost` (the caller's transaction then rolls back) when the run no longer holds the job:
        a claim by another runner and this write exclude each other (a row lock on PostgreSQL, the
        one writer on SQLite), so work and its checkpoint are committed by one run only."""
        now = utcnow()
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_s), "updated_at": now}
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        if payload is not None:
            values["payload"] = payload
        statement = _fenced(job_id, token).values(**values).returning(JobRow.id)
        found = (await session.execute(statement, execution_options={"synchronize_session": False})).first()
        if found is None:
            raise LeaseLost(job_id)

    async def finish(
        self, job_id: str, token: str, status: JobStatus, *, result: Any = None, error: str | None = None
    ) -> bool:
        """End the run and the job: completed, failed or cancelled. False: the lease was lost."""
        now = utcnow()
        values: dict[str, Any] = {"status": status, "finished_at": now, **_unleased(now)}
        if result is not None:
            values["result"] = result
        if error is not None:
            values["last_error"] = error[-_MAX_ERROR_CHARS:]
        return await self._end(_fenced(job_id, token).values(**values))

    async def retry(self, job_id: str, token: str, *, error: str, backoff: timedelta) -> bool:
        """End the run, queue the job again after `backoff`."""
        now = utcnow()
        values = {"status": "queued", "last_error": error[-_MAX_ERROR_CHARS:], "run_after": now + backoff}
        return await self._end(_fenced(job_id, token).values(**values, **_unleased(now)))

    async def release(self, job_id: str, token: str) -> bool:
        """Give the job back at once (a graceful stop): queued again, this run not counted."""
        now = utcnow()
        values = {"status": "queued", "attempts": JobRow.attempts - 1, "run_after": now}
        return await self._end(_fenced(job_id, token).values(**values, **_unleased(now)))

    async def _end(self, statement: Update) -> bool:
        async with self.db.engine.begin() as conn:
            return (await conn.execute(statement.returning(JobRow.id))).first() is not None


def _fenced(job_id: str, token: str) -> Update:
    return update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == token, JobRow.status == "running")


def _unleased(now: datetime) -> dict[str, Any]:
    return {"lease_owner": None, "lease_expires_at": None, "updated_at": now}


def claim_statement(token: str, kinds: Iterable[str], lease_s: float, now: datetime) -> Update:
    """The claim: one UPDATE of the row its subquery picks and locks (SKIP LOCKED on PostgreSQL;
    SQLite drops the FOR UPDATE and runs the statement alone)."""
    claimable = or_(
        and_(JobRow.status == "queued", JobRow.run_after <= now),
        and_(
            JobRow.status == "running",
            JobRow.lease_expires_at < now,
            JobRow.attempts < JobRow.max_attempts,
        ),
    )
    pick = (
        select(JobRow.id)
        .where(JobRow.kind.in_(list(kinds)), claimable)
        .order_by(JobRow.priority.desc(), JobRow.run_after, JobRow.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(JobRow)
        .where(JobRow.id == pick)
        .values(
            status="running",
            lease_owner=token,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=JobRow.attempts + 1,
            started_at=func.coalesce(JobRow.started_at, now),
            updated_at=now,
        )
        .returning(*_COLUMNS)
    )
