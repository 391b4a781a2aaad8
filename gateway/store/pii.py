"""PII redaction's table (migration 0018): each tenant's policy (one JSON object, written by the
admin API, audited in the same transaction). The redaction itself changes what the other tables
keep (gateway/services/pii.py); nothing here holds PII."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import AuditEvent, Base
from gateway.store.records import AuditContext


class StoredPiiPolicy(Base):
    __tablename__ = "pii_policies"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class PiiStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def policy(self, tenant_id: str) -> dict[str, Any] | None:
        async with self.db.session() as session:
            row = await session.get(StoredPiiPolicy, tenant_id)
            return dict(row.policy) if row is not None else None

    async def set_policy(
        self, tenant_id: str, policy: dict[str, Any] | None, *, at: datetime, audit: AuditContext
    ) -> None:
        """`policy` for the tenant; None removes it (the operator's default applies again)."""
        async with self.db.session() as session, session.begin():
            session.add(
                AuditEvent(
                    created_at=at,
                    actor=audit.actor,
                    action="pii_policy.set" if policy is not None else "pii_policy.delete",
                    target_type="tenant",
                    target_id=tenant_id,
                    request_id=audit.request_id,
                    client_ip=audit.client_ip,
                    details={"policy": policy},
                )
            )
            row = await session.get(StoredPiiPolicy, tenant_id)
            if policy is None:
                if row is not None:
                    await session.delete(row)
            elif row is None:
                session.add(StoredPiiPolicy(tenant_id=tenant_id, policy=policy, updated_at=at))
            else:
                row.policy, row.updated_at = policy, at
