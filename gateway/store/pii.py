"""PII redaction's table (migration 0019): each tenant's policy (one JSON object, written by the
admin API, audited in the same transaction). The redaction itself changes what the other tables
keep (gateway/services/pii.py); nothing here holds PII."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import Base
from gateway.store.records import AuditContext
from gateway.store.tenant_policy import read_policy, write_policy


class StoredPiiPolicy(Base):
    __tablename__ = "pii_policies"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class PiiStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def policy(self, tenant_id: str) -> dict[str, Any] | None:
        return await read_policy(self.db, StoredPiiPolicy, tenant_id)

    async def set_policy(
        self, tenant_id: str, policy: dict[str, Any] | None, *, at: datetime, audit: AuditContext
    ) -> None:
        """`policy` for the tenant, audited; None removes it (the operator's default applies again)."""
        await write_policy(self.db, StoredPiiPolicy, "pii_policy", tenant_id, policy, at=at, audit=audit)
