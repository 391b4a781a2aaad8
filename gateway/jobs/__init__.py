"""Durable background jobs in the SQL store, run by any replica under a lease (docs/jobs.md)."""

from gateway.jobs.job import Job, Step
from gateway.jobs.pacer import Pacer
from gateway.jobs.queue import JobQueue
from gateway.jobs.records import (
    FINAL_STATUSES,
    JobCancelled,
    JobFailed,
    JobOptions,
    JobRecord,
    JobStatus,
    JobStopping,
    LeaseLost,
    UnknownJobKind,
)
from gateway.jobs.runner import Handler, JobKind, JobRunner, RunnerPolicy

__all__ = [
    "FINAL_STATUSES",
    "Handler",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobKind",
    "JobOptions",
    "JobQueue",
    "JobRecord",
    "JobRunner",
    "JobStatus",
    "JobStopping",
    "LeaseLost",
    "Pacer",
    "RunnerPolicy",
    "Step",
    "UnknownJobKind",
]
