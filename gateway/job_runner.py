"""The composition root's builder of the durable job runner (gateway/jobs/, docs/jobs.md)."""

from __future__ import annotations

from gateway.http.drain import Drain
from gateway.jobs import JobQueue, JobRunner, Pacer, RunnerPolicy
from gateway.settings.schema import Settings
from gateway.store import Database

__all__ = ["JobRunner", "job_runner"]


def job_runner(settings: Settings, database: Database, drain: Drain) -> JobRunner:
    """Every replica can submit; this one runs jobs when TANTRA_JOBS_ENABLED. Its background engine
    work yields to the requests the replica's drain counts in flight, and it stops with the drain."""
    policy = RunnerPolicy(
        concurrency=settings.jobs_concurrency,
        lease_s=settings.jobs_lease_s,
        poll_s=settings.jobs_poll_s,
        max_attempts=settings.jobs_max_attempts,
        retry_backoff_s=settings.jobs_retry_backoff_s,
        stop_grace_s=settings.jobs_stop_grace_s,
    )
    pacer = Pacer(
        settings.jobs_request_slots,
        in_flight=lambda: drain.in_flight,
        yield_at=settings.jobs_yield_in_flight,
    )
    return JobRunner(
        JobQueue(database),
        policy,
        pacer=pacer,
        enabled=settings.jobs_enabled,
        draining=lambda: drain.draining,
    )
