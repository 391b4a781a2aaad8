"""The GDPR registry's kinds that are not plain owned rows: the usage ledger (pseudonymised, never
deleted: accounting law keeps billing records), the audit log (exported, kept) and the tenant
itself (its row kept, marked erased, so that ids stay unique; its keys' secrets, admin users and
policies gone). `REGISTRY` is every kind in the order an erasure runs them."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, delete, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.admin_users import AdminSession, AdminUser
from gateway.store.completions import StoredCompletion
from gateway.store.gdpr import OWNED_KINDS, DataKind, Erased, Subject, as_json
from gateway.store.learning import LearningPolicyRow
from gateway.store.models import ApiKey, AuditEvent, Tenant, UsageRecord
from gateway.store.moderation import StoredFlag, StoredPolicy
from gateway.store.pii import StoredPiiPolicy
from gateway.store.repository import utcnow
from gateway.store.retention import CHUNK, RetentionPolicy

ERASED = "erased-"


def pseudonym(value: str, salt: str) -> str:
    """What an erased id becomes: a salted hash (the salt is the erasure's own, never stored, so
    the id cannot be recovered from it)."""
    return ERASED + hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class LedgerKind:
    """The usage ledger: a tenant's rows, or a user's (its `end_user` column, migration 0018; rows
    written before it are linked by the request ids the user's stored chat completions and
    moderation flags keep), have their request ids and end user replaced by salted hashes and the
    client's request id and media usage nulled. Tokens and costs stay: billed totals do not change."""

    name: str = "ledger"

    @property
    def tables(self) -> tuple[str, ...]:
        return ("usage",)

    async def _where(self, session: AsyncSession, subject: Subject) -> ColumnElement[bool]:
        tenant = UsageRecord.tenant_id == subject.tenant_id
        if subject.user is None:
            return tenant
        linked: set[str] = set()
        for table in (StoredCompletion, StoredFlag):
            query = select(table.request_id).where(
                table.tenant_id == subject.tenant_id,
                table.end_user == subject.user,
                table.request_id.is_not(None),
            )
            linked.update(str(value) for value in (await session.scalars(query)).all())
        named = UsageRecord.end_user == subject.user
        return and_(tenant, or_(named, UsageRecord.request_id.in_(sorted(linked))) if linked else named)

    async def export(self, session: AsyncSession, subject: Subject) -> dict[str, list[dict[str, Any]]]:
        where = await self._where(session, subject)
        rows = (await session.scalars(select(UsageRecord).where(where).order_by(UsageRecord.id))).all()
        return {self.name: [as_json(row) for row in rows]}

    async def erase(self, session: AsyncSession, subject: Subject) -> Erased:
        where = await self._where(session, subject)
        pending = (
            await session.scalars(select(UsageRecord).where(where, _not_pseudonymised()).limit(CHUNK))
        ).all()
        salt = secrets.token_hex(16)
        for row in pending:
            row.request_id = pseudonym(row.request_id, salt)
            # One user's rows keep one pseudonym within a run: still grouped, no longer named.
            row.end_user = pseudonym(row.end_user, salt) if row.end_user else None
            row.client_request_id = None
            row.media = None
        return Erased(rows=len(pending))

    async def remaining(self, session: AsyncSession, subject: Subject) -> int:
        where = await self._where(session, subject)
        query = select(func.count()).select_from(UsageRecord).where(where, _not_pseudonymised())
        return int(await session.scalar(query) or 0)


def _not_pseudonymised() -> ColumnElement[bool]:
    return or_(
        not_(UsageRecord.request_id.startswith(ERASED)),
        and_(UsageRecord.end_user.is_not(None), not_(UsageRecord.end_user.startswith(ERASED))),
        UsageRecord.client_request_id.is_not(None),
        UsageRecord.media.is_not(None),
    )


@dataclass(frozen=True)
class AuditKind:
    """Audit entries about the subject: exported; kept by an erasure (the record of who did what,
    which the erasure's own entry joins)."""

    name: str = "audit"

    @property
    def tables(self) -> tuple[str, ...]:
        return ("audit_log",)

    async def export(self, session: AsyncSession, subject: Subject) -> dict[str, list[dict[str, Any]]]:
        if subject.user is None:
            keys = select(ApiKey.id).where(ApiKey.tenant_id == subject.tenant_id)
            where = or_(AuditEvent.target_id == subject.tenant_id, AuditEvent.target_id.in_(keys))
        else:
            # Entries whose details name the user (a JSON text search: both databases agree on it).
            where = cast(AuditEvent.details, String).contains(f'"{subject.user}"')
        rows = (await session.scalars(select(AuditEvent).where(where).order_by(AuditEvent.id))).all()
        return {self.name: [as_json(row) for row in rows]}

    async def erase(self, session: AsyncSession, subject: Subject) -> Erased:
        return Erased()

    async def remaining(self, session: AsyncSession, subject: Subject) -> int:
        return 0


# A tenant's policies (retention, moderation, PII): deleted with it, exported with it.
_POLICIES: tuple[tuple[Any, Any], ...] = (
    (RetentionPolicy, RetentionPolicy.tenant_id),
    (StoredPolicy, StoredPolicy.tenant_id),
    (StoredPiiPolicy, StoredPiiPolicy.tenant_id),
    (LearningPolicyRow, LearningPolicyRow.tenant_id),
)


@dataclass(frozen=True)
class TenantKind:
    """A whole tenant's own rows: its keys keep their rows (the ledger names them) but lose their
    secrets and are revoked; its admin users, their sessions and its policies go; the tenant row is
    renamed `erased-<id>` and disabled. Nothing for one end user."""

    name: str = "tenant"

    @property
    def tables(self) -> tuple[str, ...]:
        return (
            "tenants",
            "api_keys",
            "admin_users",
            "admin_sessions",
            "retention_policies",
            "moderation_policies",
            "pii_policies",
            "learning_policies",
        )

    async def export(self, session: AsyncSession, subject: Subject) -> dict[str, list[dict[str, Any]]]:
        if subject.user is not None:
            return {}
        found: dict[str, list[dict[str, Any]]] = {}
        secret = {"key_hash", "previous_hash", "password_hash"}
        tables: tuple[tuple[Any, Any], ...] = (
            (Tenant, Tenant.id),
            (ApiKey, ApiKey.tenant_id),
            (AdminUser, AdminUser.tenant_id),
            *_POLICIES,
        )
        for table, column in tables:
            rows = (await session.scalars(select(table).where(column == subject.tenant_id))).all()
            found[table.__tablename__] = [
                {name: value for name, value in as_json(row).items() if name not in secret} for row in rows
            ]
        return found

    async def erase(self, session: AsyncSession, subject: Subject) -> Erased:
        if subject.user is not None:
            return Erased()
        tenant_id, now = subject.tenant_id, utcnow()
        changed = 0
        keys = (
            await session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id, not_(ApiKey.key_hash.startswith(ERASED)))
            )
        ).all()
        for key in keys:
            key.key_hash = ERASED + secrets.token_hex(28)
            key.previous_hash = None
            key.previous_valid_until = None
            key.name = ""
            key.revoked_at = key.revoked_at or now
            key.updated_at = now
        changed += len(keys)
        users = select(AdminUser.id).where(AdminUser.tenant_id == tenant_id)
        await session.execute(delete(AdminSession).where(AdminSession.user_id.in_(users)))
        for table, column in ((AdminUser, AdminUser.tenant_id), *_POLICIES):
            result = await session.execute(delete(table).where(column == tenant_id))
            changed += int(getattr(result, "rowcount", 0) or 0)
        renamed = await session.execute(
            update(Tenant)
            .where(Tenant.id == tenant_id, not_(Tenant.name.startswith(ERASED)))
            .values(name=f"{ERASED}{tenant_id}", disabled=True, updated_at=now)
        )
        changed += int(getattr(renamed, "rowcount", 0) or 0)
        return Erased(rows=changed)

    async def remaining(self, session: AsyncSession, subject: Subject) -> int:
        if subject.user is not None:
            return 0
        tenant_id = subject.tenant_id
        counts = [
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.tenant_id == tenant_id,
                or_(not_(ApiKey.key_hash.startswith(ERASED)), ApiKey.previous_hash.is_not(None)),
            ),
            select(func.count()).select_from(AdminUser).where(AdminUser.tenant_id == tenant_id),
            *(
                select(func.count()).select_from(table).where(column == tenant_id)
                for table, column in _POLICIES
            ),
            select(func.count())
            .select_from(Tenant)
            .where(Tenant.id == tenant_id, not_(Tenant.name.startswith(ERASED))),
        ]
        return sum([int(await session.scalar(query) or 0) for query in counts])


# Every kind, in the order an erasure runs them: the ledger before the rows linking it to a user,
# the tenant's own rows last.
REGISTRY: tuple[DataKind, ...] = (LedgerKind(), *OWNED_KINDS, AuditKind(), TenantKind())

# Tables with a user or tenant column that hold nothing about a subject, and why.
EXEMPT: dict[str, str] = {}
