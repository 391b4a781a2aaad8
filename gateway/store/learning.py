"""The learning loop's tenant policies (migration 0024, docs/fine-tuning.md "The learning loop"):
one row per tenant holding the policy the operator set (`policy`: enabled, minimum new feedback,
held-out fraction, base model, method, alias suffix) and the loop's own state beside it (`state`:
the last feedback `seq` a cycle consumed, the promoted version's job id, the cycle under way).

The policy is set through the admin API (audited, as moderation's and PII's are); the state only by
the loop and by a rollback (also audited). Exported and erased with the tenant
(gateway/store/gdpr_special.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import AuditEvent, Base
from gateway.store.records import AuditContext
from gateway.store.tenant_policy import read_policy, write_policy


class LearningPolicyRow(Base):
    __tablename__ = "learning_policies"

    tenant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # {"cursor": feedback seq, "promoted": job id, "cycle": job id of the cycle under way}
    state: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)


class LearningStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def policy(self, tenant_id: str) -> dict[str, Any] | None:
        return await read_policy(self.db, LearningPolicyRow, tenant_id)

    async def set_policy(
        self, tenant_id: str, policy: dict[str, Any] | None, *, at: datetime, audit: AuditContext
    ) -> None:
        await write_policy(
            self.db, LearningPolicyRow, "learning_policy", tenant_id, policy, at=at, audit=audit
        )

    async def state(self, tenant_id: str) -> dict[str, Any]:
        async with self.db.session() as session:
            row = await session.get(LearningPolicyRow, tenant_id)
            return dict(row.state or {}) if row is not None else {}

    async def enabled(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(tenant, policy, state) of every tenant whose policy is enabled."""
        async with self.db.session() as session:
            rows = (await session.scalars(select(LearningPolicyRow))).all()
            return [
                (r.tenant_id, dict(r.policy), dict(r.state or {})) for r in rows if r.policy.get("enabled")
            ]

    async def update_state(
        self,
        tenant_id: str,
        changes: dict[str, Any],
        *,
        at: datetime,
        expect_cycle: str | None = None,
        audit: tuple[AuditContext, str, dict[str, Any]] | None = None,
    ) -> bool:
        """Merge `changes` into the tenant's state (a None value removes the key); with
        `expect_cycle`, only while that cycle is the one under way (False otherwise: another replica's
        check started its own). `audit` is (who, action, details), written in the same transaction."""
        async with self.db.session() as session, session.begin():
            row = await session.get(LearningPolicyRow, tenant_id, with_for_update=True)
            if row is None:
                return False
            state = dict(row.state or {})
            if expect_cycle is not None and state.get("cycle") != expect_cycle:
                return False
            for name, value in changes.items():
                if value is None:
                    state.pop(name, None)
                else:
                    state[name] = value
            row.state, row.updated_at = state, at
            if audit is not None:
                context, action, details = audit
                session.add(
                    AuditEvent(
                        created_at=at,
                        actor=context.actor,
                        action=action,
                        target_type="tenant",
                        target_id=tenant_id,
                        request_id=context.request_id,
                        client_ip=context.client_ip,
                        details=details,
                    )
                )
            return True
