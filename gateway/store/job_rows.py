"""The durable jobs' table (migration 0006): one row per job, its lease and its checkpoint.

Apart from models.py so that the tables other features add beside it stay separate files; the row
shares models.py's `Base`, so Alembic's metadata holds it too. The runner is gateway/jobs/.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.models import Base


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # A runner's claim: queued jobs whose time has come, and running ones whose lease expired.
        Index("ix_jobs_status_run_after", "status", "run_after"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_jobs_tenant_time", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The handler's name in the runner's registry: batch, response, ...
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    # Who it belongs to (NULL for the gateway's own jobs, such as retention): the tenant, the key that
    # submitted it and the end user it was made for (OpenAI's `user`), so erasure can find it.
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    user: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # queued, running, completed, failed, cancelled
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    # Higher runs first.
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # The handler's progress, written in the same transaction as the work it marks done.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    result: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    # Runs started (a claim counts one; a graceful release gives it back) and the most allowed.
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The claim: a token unique to one run on one replica, and when it lapses unless renewed. Every
    # write of a run is conditioned on the token (a fence), so a run that lost its lease writes nothing.
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Not claimed before this (a retry's backoff).
    run_after: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
