"""Named admin users of the control panel and their sessions (issue 21): rows and the store's
operations on them. Each change is audited in its own transaction, as tenants and keys are.

A session row is found by the SHA-256 of its cookie's token, so a copy of the database does not
hold usable cookies; it carries the session's CSRF token for the panel's forms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store.database import Database
from gateway.store.models import ApiKey, AuditEvent, Base
from gateway.store.records import AuditContext
from gateway.store.repository import AlreadyExists, NotFoundInStore, _audit, _commit_unique, new_id, utcnow

ROLES = ("owner", "operator", "auditor", "tenant_admin")


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    # argon2id, in the PHC string format argon2-cffi writes (parameters and salt included).
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    # The one tenant a tenant_admin manages; null for the other roles.
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), nullable=True, index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AdminSession(Base):
    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass(frozen=True)
class AdminAccount:
    """An admin user as the rest of the gateway sees it (never the ORM row)."""

    id: str
    username: str
    password_hash: str
    role: str
    tenant_id: str | None
    disabled: bool

    @classmethod
    def of(cls, row: AdminUser) -> AdminAccount:
        return cls(row.id, row.username, row.password_hash, row.role, row.tenant_id, row.disabled)


@dataclass(frozen=True)
class AdminUserView:
    """What the panel shows of an admin user; `sso`: signs in through OIDC only (no password)."""

    id: str
    username: str
    role: str
    tenant_id: str | None
    disabled: bool
    sso: bool
    last_login_at: datetime | None

    @classmethod
    def of(cls, row: AdminUser) -> AdminUserView:
        sso = row.password_hash.startswith("oidc:")
        return cls(row.id, row.username, row.role, row.tenant_id, row.disabled, sso, row.last_login_at)


@dataclass(frozen=True)
class SessionRecord:
    account: AdminAccount
    csrf_token: str
    expires_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AdminUserStore:
    def __init__(self, database: Database) -> None:
        self.db = database

    async def create_user(
        self, username: str, password_hash: str, role: str, tenant_id: str | None, *, audit: AuditContext
    ) -> AdminAccount:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if (role == "tenant_admin") != (tenant_id is not None):
            raise ValueError("a tenant_admin needs a tenant, and only a tenant_admin has one")
        now = utcnow()
        row = AdminUser(
            id=new_id("adm"),
            username=username,
            password_hash=password_hash,
            role=role,
            tenant_id=tenant_id,
            disabled=False,
            created_at=now,
            updated_at=now,
        )
        async with self.db.session() as session:
            session.add(row)
            details = {"username": username, "role": role, "tenant_id": tenant_id}
            _audit(session, audit, "admin_user.create", "admin_user", row.id, details)
            await _commit_unique(session, f"An admin user named {username!r} already exists.")
        return AdminAccount.of(row)

    async def find_user(self, username: str) -> AdminAccount | None:
        async with self.db.session() as session:
            row = await session.scalar(select(AdminUser).where(AdminUser.username == username))
        return AdminAccount.of(row) if row is not None else None

    async def list_users(self) -> list[AdminUserView]:
        """Every admin user by name, for the panel's users page (never a hash)."""
        async with self.db.session() as session:
            rows = await session.scalars(select(AdminUser).order_by(AdminUser.username))
            return [AdminUserView.of(row) for row in rows]

    async def set_disabled(self, user_id: str, disabled: bool, *, audit: AuditContext) -> None:
        """Disable (their sessions end at once: the rows go) or enable an admin user, audited."""
        async with self.db.session() as session:
            row = await session.get(AdminUser, user_id)
            if row is None:
                raise NotFoundInStore(f"No admin user {user_id!r}.")
            row.disabled, row.updated_at = disabled, utcnow()
            if disabled:
                await session.execute(delete(AdminSession).where(AdminSession.user_id == user_id))
            action = "admin_user.disable" if disabled else "admin_user.enable"
            _audit(session, audit, action, "admin_user", user_id, {"username": row.username})
            await session.commit()

    async def count_users(self) -> int:
        async with self.db.session() as session:
            return len(list(await session.scalars(select(AdminUser.id))))

    async def set_password(self, user_id: str, password_hash: str, *, audit: AuditContext | None) -> None:
        """A new hash (argon2's rehash on login when the parameters changed, or a reset)."""
        async with self.db.session() as session:
            row = await session.get(AdminUser, user_id)
            if row is None:
                raise NotFoundInStore(f"No admin user {user_id!r}.")
            row.password_hash = password_hash
            row.updated_at = utcnow()
            if audit is not None:
                _audit(session, audit, "admin_user.password", "admin_user", user_id, {})
            await session.commit()

    async def set_role(
        self, user_id: str, role: str, tenant_id: str | None, *, audit: AuditContext
    ) -> AdminAccount:
        """A new role (an OIDC user's, as its provider's claims now map it), audited."""
        async with self.db.session() as session:
            row = await session.get(AdminUser, user_id)
            if row is None:
                raise NotFoundInStore(f"No admin user {user_id!r}.")
            details = {"from": row.role, "to": role, "tenant_id": tenant_id}
            row.role, row.tenant_id, row.updated_at = role, tenant_id, utcnow()
            _audit(session, audit, "admin_user.role", "admin_user", user_id, details)
            account = AdminAccount.of(row)
            await _commit_unique(session, f"No tenant {tenant_id!r} for the admin user {row.username!r}.")
            return account

    # Sessions --------------------------------------------------------------------------------

    async def open_session(
        self,
        account: AdminAccount,
        token: str,
        csrf_token: str,
        ttl: timedelta,
        *,
        audit: AuditContext,
        details: dict[str, Any] | None = None,
    ) -> None:
        now = utcnow()
        async with self.db.session() as session:
            # Expired sessions of anyone go on each login: the table stays the size of live sessions.
            await session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
            session.add(
                AdminSession(
                    token_hash=token_digest(token),
                    user_id=account.id,
                    csrf_token=csrf_token,
                    created_at=now,
                    expires_at=now + ttl,
                    client_ip=audit.client_ip,
                )
            )
            row = await session.get(AdminUser, account.id)
            if row is not None:
                row.last_login_at = now
            said = {"username": account.username, **(details or {})}
            _audit(session, audit, "admin.login", "admin_user", account.id, said)
            await session.commit()

    async def find_session(self, token: str) -> SessionRecord | None:
        query = (
            select(AdminSession, AdminUser)
            .join(AdminUser, AdminUser.id == AdminSession.user_id)
            .where(AdminSession.token_hash == token_digest(token), AdminSession.expires_at > utcnow())
        )
        async with self.db.session() as session:
            found = (await session.execute(query)).first()
        if found is None:
            return None
        row, user = found
        return SessionRecord(AdminAccount.of(user), row.csrf_token, row.expires_at)

    async def close_session(self, token: str, account: AdminAccount, *, audit: AuditContext) -> None:
        async with self.db.session() as session:
            await session.execute(delete(AdminSession).where(AdminSession.token_hash == token_digest(token)))
            _audit(session, audit, "admin.logout", "admin_user", account.id, {"username": account.username})
            await session.commit()

    async def record(self, audit: AuditContext, action: str, details: dict[str, Any]) -> None:
        """An audit entry of its own (a refused login: who tried, from where)."""
        async with self.db.session() as session:
            _audit(session, audit, action, "admin_user", None, details)
            await session.commit()

    # The audit log, filtered for the panel ---------------------------------------------------

    async def audit_page(
        self,
        *,
        limit: int,
        actor: str | None = None,
        action: str | None = None,
        target_id: str | None = None,
        tenant_id: str | None = None,
    ) -> list[AuditEvent]:
        """Newest first. `tenant_id`: only entries about that tenant or its keys (a tenant admin's view)."""
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if actor:
            query = query.where(AuditEvent.actor == actor)
        if action:
            query = query.where(AuditEvent.action.startswith(action, autoescape=True))
        if target_id:
            query = query.where(AuditEvent.target_id == target_id)
        if tenant_id is not None:
            keys = select(ApiKey.id).where(ApiKey.tenant_id == tenant_id)
            query = query.where((AuditEvent.target_id == tenant_id) | AuditEvent.target_id.in_(keys))
        async with self.db.session() as session:
            return list((await session.execute(query)).scalars())


__all__ = [
    "ROLES",
    "AdminAccount",
    "AdminUserStore",
    "AdminUserView",
    "AlreadyExists",
    "SessionRecord",
    "token_digest",
]
