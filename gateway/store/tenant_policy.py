"""One JSON policy per tenant (moderation's, PII redaction's): read it, or set or remove it with the
change audited in the same transaction. The tables differ; what is done with them does not."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.store.database import Database
from gateway.store.models import AuditEvent
from gateway.store.records import AuditContext


async def read_policy(db: Database, table: Any, tenant_id: str) -> dict[str, Any] | None:
    async with db.session() as session:
        row = await session.get(table, tenant_id)
        return dict(row.policy) if row is not None else None


async def write_policy(
    db: Database,
    table: Any,
    name: str,
    tenant_id: str,
    policy: dict[str, Any] | None,
    *,
    at: datetime,
    audit: AuditContext,
) -> None:
    """`policy` for the tenant in `table`, audited as `<name>.set`; None removes it (`<name>.delete`:
    the operator's default applies again)."""
    async with db.session() as session, session.begin():
        session.add(
            AuditEvent(
                created_at=at,
                actor=audit.actor,
                action=f"{name}.set" if policy is not None else f"{name}.delete",
                target_type="tenant",
                target_id=tenant_id,
                request_id=audit.request_id,
                client_ip=audit.client_ip,
                details={"policy": policy},
            )
        )
        row = await session.get(table, tenant_id)
        if policy is None:
            if row is not None:
                await session.delete(row)
        elif row is None:
            session.add(table(tenant_id=tenant_id, policy=policy, updated_at=at))
        else:
            row.policy, row.updated_at = policy, at
