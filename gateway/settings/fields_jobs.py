"""The durable job runner's settings (docs/jobs.md): whether this replica runs background jobs, how
many at once, their leases and retries, and how much engine work they may keep in flight beside
interactive requests.

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class JobsFields(BaseModel):
    """Background jobs (batches, background responses, later fine-tuning and retention) run from the
    SQL store by any replica; these knobs are per replica."""

    jobs_enabled: bool = Field(
        True,
        description="Run background jobs on this replica. Off: jobs are still accepted and stored, and "
        "replicas with it on run them.",
    )
    jobs_concurrency: int = Field(
        8,
        ge=1,
        le=256,
        description="Jobs this replica runs at once (batches, background responses...); a kind may take "
        "fewer of them (batches leave the rest to short jobs).",
    )
    jobs_lease_s: float = Field(
        30.0,
        ge=1,
        description="A running job's lease, renewed every third of it: a replica that dies loses its jobs "
        "to another replica this long after its last renewal. Keep it well above the replicas' clock skew.",
    )
    jobs_poll_s: float = Field(
        5.0,
        gt=0,
        description="How often an idle runner looks for jobs other replicas submitted and retries that "
        "came due; a job submitted on this replica, or a run's end, wakes it at once.",
    )
    jobs_max_attempts: int = Field(
        3,
        ge=1,
        description="Runs a job gets (a handler that raised, or a replica that died holding it) before it "
        "is failed; a graceful stop gives the job back without counting a run.",
    )
    jobs_retry_backoff_s: float = Field(
        10.0, ge=0, description="Wait before a failed run is retried, doubled at each further attempt."
    )
    jobs_stop_grace_s: float = Field(
        10.0,
        ge=0,
        description="At shutdown, how long running jobs get to checkpoint and give their lease back "
        "before they are interrupted (their open transaction is rolled back, nothing is lost).",
    )
    jobs_request_slots: int = Field(
        4,
        ge=1,
        description="Engine requests background jobs keep in flight at once on this replica, across all "
        "jobs (a batch's lines wait for a slot).",
    )
    jobs_yield_in_flight: int = Field(
        16,
        ge=0,
        description="Interactive requests in flight on this replica at which background work waits before "
        "its next engine request, so batches fill idle capacity only; 0: never waits.",
    )
    # Self-monitoring evaluations (docs/orchestration.md "Self-monitoring"): scheduled jobs of this
    # runner that score eval sets against the served models through the gateway's own endpoints.
    evals_enabled: bool = Field(
        True, description="Eval sets (/admin/evals) and their scheduled runs; off: no eval API, no runs."
    )
    evals_schedule_s: float = Field(
        300.0,
        ge=1,
        description="Seconds between two checks for eval sets whose interval is due (one check job per "
        "slot across all replicas).",
    )
    evals_regression_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Score (0..1) a new model version may lose against the last version before the "
        "regression alert (metric tantra_eval_regression and a warning log line); a set may set its own.",
    )
    evals_max_items: int = Field(
        500, ge=1, description="Items an eval set may hold (a larger upload is a 413)."
    )
