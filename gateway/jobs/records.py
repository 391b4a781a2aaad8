"""What the job runner hands out: a job's stored state as a plain record, its statuses, and the
exceptions a handler raises (or meets) to say how a run ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class JobRecord:
    """One row of the `jobs` table, detached from any session."""

    id: str
    kind: str
    tenant_id: str | None
    created_by: str | None
    user: str | None
    status: JobStatus
    priority: int
    payload: dict[str, Any]
    checkpoint: dict[str, Any] | None
    result: Any
    attempts: int
    max_attempts: int
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    run_after: datetime
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_at is not None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class JobOptions:
    """How a job is submitted, beyond what it is and whose: unset values take its kind's defaults."""

    # Higher runs first (a kind's default: its registration's).
    priority: int | None = None
    # Runs allowed before it fails (default: the kind's, else TANTRA_JOBS_MAX_ATTEMPTS).
    max_attempts: int | None = None
    # Not started before this (naive UTC).
    run_after: datetime | None = None
    # The job's id; default `job_<random>`. A feature may use its own object's id (a batch's).
    job_id: str | None = None


class JobCancelled(Exception):
    """Raised by a handler (or `Job.check`) when it stops because cancellation was requested: the job
    ends `cancelled`, with `result` (what was done, e.g. a batch's partial output) kept."""

    def __init__(self, result: Any = None) -> None:
        super().__init__("the job was cancelled")
        self.result = result


class JobStopping(Exception):
    """Raised by `Job.check` when this replica is shutting down: the run gives its lease back (the job
    is queued again, this run not counted) and another replica resumes from the last checkpoint."""


class LeaseLost(Exception):
    """The run no longer holds its job (its lease expired and another replica claimed it, or the job
    was deleted): whatever the current transaction wrote is rolled back, and the run ends silently."""


class JobFailed(Exception):
    """Raised by a handler for a failure that a retry would not mend (bad input): the job fails at
    once with this message, whatever attempts are left. Any other exception is retried."""


class UnknownJobKind(ValueError):
    """`submit` for a kind no handler is registered for."""
