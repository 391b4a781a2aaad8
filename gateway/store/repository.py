"""The store's operations: tenants and keys (each admin change audited in its own transaction),
key lookups for authentication, the usage ledger's writes and reports, and the audit log."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.database import Database
from gateway.store.models import ApiKey, AuditEvent, DeadLetter, Tenant, UsageRecord
from gateway.store.records import LIMIT_FIELDS, AuditContext, KeyRecord, Limits, UsageRow
from gateway.store.reports import GroupBy, report_query, report_row
from gateway.store.rotation import grace_conflict, swap


class NotFoundInStore(LookupError):
    pass


class AlreadyExists(ValueError):
    pass


def utcnow() -> datetime:
    """Naive UTC, as every time column stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Store:
    def __init__(self, database: Database) -> None:
        self.db = database

    # Tenants ---------------------------------------------------------------------------------

    async def create_tenant(
        self, name: str, limits: Limits, *, disabled: bool = False, audit: AuditContext
    ) -> Tenant:
        now = utcnow()
        tenant = Tenant(
            id=new_id("tn"), name=name, disabled=disabled, created_at=now, updated_at=now, **_columns(limits)
        )
        async with self.db.session() as session:
            session.add(tenant)
            _audit(session, audit, "tenant.create", "tenant", tenant.id, {"name": name, **limits.as_dict()})
            await _commit_unique(session, f"A tenant named {name!r} already exists.")
        return tenant

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self.db.session() as session:
            tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFoundInStore(f"No tenant with id {tenant_id!r}.")
        return tenant

    async def find_tenant(self, name: str) -> Tenant | None:
        async with self.db.session() as session:
            return (await session.execute(select(Tenant).where(Tenant.name == name))).scalar_one_or_none()

    async def list_tenants(self) -> list[Tenant]:
        async with self.db.session() as session:
            return list((await session.execute(select(Tenant).order_by(Tenant.created_at))).scalars())

    async def update_tenant(self, tenant_id: str, changes: dict[str, Any], *, audit: AuditContext) -> Tenant:
        async with self.db.session() as session:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFoundInStore(f"No tenant with id {tenant_id!r}.")
            _apply(tenant, changes, allowed=(*LIMIT_FIELDS, "name", "disabled"))
            _audit(session, audit, "tenant.update", "tenant", tenant_id, _jsonable(changes))
            await _commit_unique(session, f"A tenant named {changes.get('name')!r} already exists.")
        return tenant

    # Keys ------------------------------------------------------------------------------------

    async def create_key(
        self,
        tenant_id: str,
        *,
        name: str,
        key_hash: str,
        redacted: str,
        limits: Limits,
        expires_at: datetime | None,
        audit: AuditContext,
    ) -> ApiKey:
        now = utcnow()
        key = ApiKey(
            id=new_id("key"),
            tenant_id=tenant_id,
            name=name,
            key_hash=key_hash,
            redacted=redacted,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            **_columns(limits),
        )
        async with self.db.session() as session:
            if await session.get(Tenant, tenant_id) is None:
                raise NotFoundInStore(f"No tenant with id {tenant_id!r}.")
            session.add(key)
            details = {"name": name, "redacted": redacted, "expires_at": expires_at, **limits.as_dict()}
            _audit(session, audit, "key.create", "key", key.id, _jsonable(details))
            await session.commit()
        return key

    async def get_key(self, key_id: str) -> ApiKey:
        async with self.db.session() as session:
            key = await session.get(ApiKey, key_id)
        if key is None:
            raise NotFoundInStore(f"No API key with id {key_id!r}.")
        return key

    async def list_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if tenant_id is not None:
            query = query.where(ApiKey.tenant_id == tenant_id)
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())

    async def update_key(self, key_id: str, changes: dict[str, Any], *, audit: AuditContext) -> ApiKey:
        async with self.db.session() as session:
            key = await self._live_key(session, key_id)
            _apply(key, changes, allowed=(*LIMIT_FIELDS, "name", "expires_at"))
            _audit(session, audit, "key.update", "key", key_id, _jsonable(changes))
            await session.commit()
        return key

    async def rotate_key(
        self, key_id: str, *, key_hash: str, redacted: str, grace: timedelta, audit: AuditContext
    ) -> tuple[ApiKey, str]:
        """Give the key a new secret; the old one works for `grace` more. Returns the old hash too.
        Serialized (row lock, compare-and-swap: `rotation`); refused while a grace period runs."""
        now = utcnow()
        async with self.db.session() as session:
            key = await self._live_key(session, key_id, lock=True)
            old_hash = key.key_hash
            if (conflict := grace_conflict(key, grace, now)) is not None:
                raise AlreadyExists(conflict)
            swapped = swap(key, key_hash=key_hash, redacted=redacted, grace=grace, now=now)
            rotated = (await session.execute(swapped)).scalar_one_or_none()
            if rotated is None:
                raise AlreadyExists(f"The API key {key_id!r} changed while it was rotated; try again.")
            details = {"redacted": redacted, "grace_seconds": grace.total_seconds()}
            _audit(session, audit, "key.rotate", "key", key_id, details)
            await session.commit()
        return rotated, old_hash

    async def revoke_key(self, key_id: str, *, audit: AuditContext) -> ApiKey:
        now = utcnow()
        async with self.db.session() as session:
            key = await self._live_key(session, key_id)
            key.revoked_at = key.updated_at = now
            key.previous_hash = key.previous_valid_until = None
            _audit(session, audit, "key.revoke", "key", key_id, {"redacted": key.redacted})
            await session.commit()
        return key

    async def find_key_by_id(self, key_id: str) -> KeyRecord | None:
        """The key with this id (for work the gateway does on a key's behalf: a batch's lines)."""
        query = select(ApiKey, Tenant).join(Tenant, ApiKey.tenant_id == Tenant.id).where(ApiKey.id == key_id)
        async with self.db.session() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        key, tenant = row
        return KeyRecord(
            key_id=key.id,
            key_name=key.name,
            tenant_id=tenant.id,
            tenant_name=tenant.name,
            key_limits=Limits.of(key),
            tenant_limits=Limits.of(tenant),
            tenant_disabled=tenant.disabled,
            revoked_at=key.revoked_at,
            expires_at=key.expires_at,
        )

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key whose current (or, during a rotation's grace, previous) secret has this hash."""
        query = (
            select(ApiKey, Tenant)
            .join(Tenant, ApiKey.tenant_id == Tenant.id)
            .where(or_(ApiKey.key_hash == key_hash, ApiKey.previous_hash == key_hash))
        )
        async with self.db.session() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        key, tenant = row
        return KeyRecord(
            key_id=key.id,
            key_name=key.name,
            tenant_id=tenant.id,
            tenant_name=tenant.name,
            key_limits=Limits.of(key),
            tenant_limits=Limits.of(tenant),
            tenant_disabled=tenant.disabled,
            revoked_at=key.revoked_at,
            expires_at=key.expires_at,
            superseded_until=key.previous_valid_until if key.key_hash != key_hash else None,
        )

    async def _live_key(self, session: AsyncSession, key_id: str, *, lock: bool = False) -> ApiKey:
        """The key, not revoked; `lock` holds its row to the transaction's end (PostgreSQL's FOR UPDATE)."""
        key = await session.get(ApiKey, key_id, with_for_update=lock)
        if key is None:
            raise NotFoundInStore(f"No API key with id {key_id!r}.")
        if key.revoked_at is not None:
            raise AlreadyExists(f"The API key {key_id!r} is revoked.")
        return key

    # The ledger ------------------------------------------------------------------------------

    async def add_usage(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        # Core on a connection, not an ORM session: the ORM's bulk insert path was most of the
        # flush's CPU, and nothing here needs objects back.
        async with self.db.engine.begin() as conn:
            await conn.execute(self._insert_new_usage, [row.as_row() for row in rows])

    @functools.cached_property
    def _insert_new_usage(self) -> Any:
        """An insert that skips a row whose request id is already written: a batch retried after a
        commit whose answer was lost (the connection dropped) adds nothing the second time. Built
        once: the statement is the same for every flush."""
        dialect = postgresql if self.db.url.get_backend_name() == "postgresql" else sqlite
        return dialect.insert(UsageRecord.__table__).on_conflict_do_nothing(index_elements=["request_id"])

    async def set_aside(self, row: UsageRow, reason: str) -> None:
        """Keep a row the usage table refused, as escaped JSON, with the database's reason."""
        record = DeadLetter(
            created_at=datetime.now(UTC).replace(tzinfo=None),
            request_id=_printable(row.request_id)[:160],
            reason=_printable(reason)[:2000],
            row=orjson.dumps(row.as_row(), default=str).decode(),
        )
        async with self.db.session() as session:
            session.add(record)
            await session.commit()

    async def dead_letters(self) -> list[DeadLetter]:
        async with self.db.session() as session:
            return list((await session.execute(select(DeadLetter).order_by(DeadLetter.id))).scalars())

    async def usage_since(
        self, *, tenant_id: str | None = None, key_id: str | None = None, since: datetime
    ) -> tuple[int, int]:
        """Total tokens and cost (micro-USD) recorded for a tenant or key since `since`."""
        query = select(
            func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
            func.coalesce(func.sum(UsageRecord.cost_micros), 0),
        ).where(UsageRecord.created_at >= since)
        if tenant_id is not None:
            query = query.where(UsageRecord.tenant_id == tenant_id)
        if key_id is not None:
            query = query.where(UsageRecord.key_id == key_id)
        async with self.db.session() as session:
            tokens, cost = (await session.execute(query)).one()
        return int(tokens), int(cost)

    async def usage_report(
        self,
        *,
        group_by: Sequence[GroupBy],
        start: datetime | None = None,
        end: datetime | None = None,
        tenant_id: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        served_model: str | None = None,
    ) -> list[dict[str, Any]]:
        """Ledger totals grouped by any of tenant, key, model, served model and (UTC) day."""
        filters = {"tenant_id": tenant_id, "key_id": key_id, "model": model, "served_model": served_model}
        async with self.db.session() as session:
            result = await session.execute(report_query(group_by, start, end, filters))
            return [report_row(dict(row._mapping)) for row in result]

    async def usage_rows(
        self, *, key_id: str | None = None, tenant_id: str | None = None
    ) -> list[UsageRecord]:
        query = select(UsageRecord).order_by(UsageRecord.id)
        if key_id is not None:
            query = query.where(UsageRecord.key_id == key_id)
        if tenant_id is not None:
            query = query.where(UsageRecord.tenant_id == tenant_id)
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())

    # The audit log ---------------------------------------------------------------------------

    async def list_audit(
        self, *, limit: int = 100, before_id: int | None = None, target_id: str | None = None
    ) -> list[AuditEvent]:
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        if target_id is not None:
            query = query.where(AuditEvent.target_id == target_id)
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())


def _printable(text: str) -> str:
    """`text` without NUL and other control characters, which some databases refuse."""
    return "".join(ch for ch in text if ch.isprintable() or ch in "\t\n")


def _columns(limits: Limits) -> dict[str, Any]:
    values = limits.as_dict()
    return {name: values[name] for name in LIMIT_FIELDS}


def _apply(row: Any, changes: dict[str, Any], *, allowed: Sequence[str]) -> None:
    for name, value in changes.items():
        if name not in allowed:
            raise ValueError(f"{name!r} cannot be changed here.")
        if name == "allowed_models" and value is not None:
            value = list(value)
        setattr(row, name, value)
    row.updated_at = utcnow()


def _audit(
    session: AsyncSession,
    audit: AuditContext,
    action: str,
    target_type: str,
    target_id: str | None,
    details: dict[str, Any],
) -> None:
    session.add(
        AuditEvent(
            created_at=utcnow(),
            actor=audit.actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            request_id=audit.request_id,
            client_ip=audit.client_ip,
            details=_jsonable(details),
        )
    )


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in details.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


async def _commit_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise AlreadyExists(message) from None
