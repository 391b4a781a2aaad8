"""The store's tables: tenants, their API keys, the usage ledger and the audit log.

Times are naive UTC everywhere, so that grouping by day means the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGSERIAL.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class LimitColumns:
    """Limits a tenant or a key may carry; NULL means "no limit at this level"."""

    @declared_attr
    def allowed_models(cls) -> Mapped[list[str] | None]:
        return mapped_column(JSON, nullable=True)

    @declared_attr
    def rpm(cls) -> Mapped[int | None]:
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def tpm(cls) -> Mapped[int | None]:
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def audio_spm(cls) -> Mapped[int | None]:
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def max_concurrent(cls) -> Mapped[int | None]:
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def budget_tokens(cls) -> Mapped[int | None]:
        return mapped_column(BigInteger, nullable=True)

    @declared_attr
    def budget_usd(cls) -> Mapped[float | None]:
        return mapped_column(Float(asdecimal=False), nullable=True)

    @declared_attr
    def budget_period(cls) -> Mapped[str]:
        return mapped_column(String(8), nullable=False, default="month", server_default="month")

    @declared_attr
    def batch_tokens(cls) -> Mapped[int | None]:
        # Input tokens its batches may have enqueued at once (migration 0011).
        return mapped_column(BigInteger, nullable=True)

    @declared_attr
    def memory(cls) -> Mapped[bool | None]:
        # Memory in chat (migration 0015): None defers to the tenant, then the operator's default.
        return mapped_column(Boolean, nullable=True)

    @declared_attr
    def fine_tuning_jobs(cls) -> Mapped[int | None]:
        # Fine-tuning jobs active at once (migration 0016); None: the operator's default.
        return mapped_column(Integer, nullable=True)

    @declared_attr
    def fine_tuning_models(cls) -> Mapped[int | None]:
        # Fine-tuned models kept, active jobs included (migration 0016); None: the operator's default.
        return mapped_column(Integer, nullable=True)


class Tenant(LimitColumns, Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class ApiKey(LimitColumns, Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # SHA-256 of the secret; the secret itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # What a person recognises the key by: `sk-tantra-AbCd...wxyz`.
    redacted: Mapped[str] = mapped_column(String(40), nullable=False)
    # During a rotation's grace period the old secret still works until `previous_valid_until`.
    previous_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class DeadLetter(Base):
    """A ledger row the database refused (migration 0003): kept as escaped JSON, never retried."""

    __tablename__ = "usage_dead_letter"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    request_id: Mapped[str] = mapped_column(String(160), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    row: Mapped[str] = mapped_column(Text, nullable=False)


class UsageRecord(Base):
    """One row per authenticated request: the ledger."""

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_tenant_time", "tenant_id", "created_at"),
        Index("ix_usage_key_time", "key_id", "created_at"),
        Index("ix_usage_time", "created_at"),
        # The gateway's own id, one per request (migration 0004): a write retried after a commit
        # whose answer was lost adds nothing (ON CONFLICT DO NOTHING).
        Index("uq_usage_request_id", "request_id", unique=True),
        # A GDPR erasure's search for an end user's rows (migration 0018).
        Index("ix_usage_tenant_end_user", "tenant_id", "end_user"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    request_id: Mapped[str] = mapped_column(String(160), nullable=False)
    # The client's x-request-id, when it sent one: clients may reuse it, so it is not the key.
    client_request_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The model the client asked for (its catalog name) ...
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    # ... and the one that answered (a fallback's), which `cost_micros` is priced by; NULL when no
    # upstream answered (refused, failed before an answer).
    served_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    stream: Mapped[bool] = mapped_column(Boolean, nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    # Millionths of a US dollar, an integer so that sums are exact on every database.
    cost_micros: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    # completed, client_closed, upstream_error, rejected, failed
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
    audio_seconds: Mapped[float | None] = mapped_column(Float(asdecimal=False), nullable=True)
    # `usage.tantra_media` of a chat request with media parts.
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The request's end user (its body's `user` or `safety_identifier`), for erasure (migration 0018):
    # an erased user's rows keep a salted hash here instead.
    end_user: Mapped[str | None] = mapped_column(String(256), nullable=True)


class AuditEvent(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str] = mapped_column(String(32), nullable=False)
    target_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(160), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
