"""Named admin identities (issue 21): argon2 passwords, roles, and panel sessions with CSRF tokens.

Roles:
- owner: everything, admin users included;
- operator: tenants, keys and limits, every tenant's;
- auditor: reads everything, changes nothing;
- tenant_admin: one tenant's keys and their limits, and that tenant's audit entries; neither other
  tenants nor the tenant's own limits (the operator's ceiling).

The shared admin key (`AdminGuard`) stays the automation's service identity for the JSON API.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.auth.oidc import OidcUser
from gateway.errors import AuthenticationFailed, NotFound, PermissionDenied
from gateway.store import AuditContext
from gateway.store.admin_users import ROLES, AdminAccount, AdminUserStore, AlreadyExists

WRITERS = frozenset({"owner", "operator", "tenant_admin"})
ALL_TENANTS = frozenset({"owner", "operator", "auditor"})

# A password hashed once at start, verified against when the user is unknown: a wrong username
# costs the same argon2 time as a wrong password, so timing does not tell which users exist.
_hasher = PasswordHasher()
MIN_PASSWORD_CHARS = 12


class Forbidden(PermissionDenied):
    code = "insufficient_role"


class NotLoggedIn(AuthenticationFailed):
    code = "not_logged_in"

    def __init__(self) -> None:
        super().__init__("Log in to the admin panel first.")


class BadCsrf(PermissionDenied):
    code = "csrf_failed"

    def __init__(self) -> None:
        super().__init__("The form's CSRF token is missing or wrong; reload the page and try again.")


@dataclass(frozen=True)
class Identity:
    """Who is acting in the panel, and what their role lets them do."""

    user_id: str
    username: str
    role: str
    tenant_id: str | None

    @property
    def actor(self) -> str:
        """The audit log's actor: the person, never the shared "admin"."""
        return f"user:{self.username}"

    @property
    def can_write(self) -> bool:
        return self.role in WRITERS

    @property
    def all_tenants(self) -> bool:
        return self.role in ALL_TENANTS

    def sees_tenant(self, tenant_id: str) -> bool:
        return self.all_tenants or self.tenant_id == tenant_id

    def require_write(self) -> None:
        if not self.can_write:
            raise Forbidden(f"The {self.role} role cannot change anything.")

    def require_tenant(self, tenant_id: str) -> None:
        """A tenant admin reaching another tenant (a tampered URL) gets the 404 of a missing one."""
        if not self.sees_tenant(tenant_id):
            raise NotFound(f"No tenant {tenant_id!r}.")

    def require_all_tenants(self) -> None:
        """Tenants themselves (create, change limits) are the operator's."""
        self.require_write()
        if not self.all_tenants:
            raise Forbidden("Only an owner or an operator changes tenants.")

    @classmethod
    def of(cls, account: AdminAccount) -> Identity:
        return cls(account.id, account.username, account.role, account.tenant_id)


def oidc_marker(issuer: str, sub: str) -> str:
    """An OIDC user's stored "password hash": not argon2's format, so no password ever verifies."""
    return "oidc:" + hashlib.sha256(f"{issuer}\n{sub}".encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class OpenedSession:
    token: str
    csrf_token: str
    identity: Identity


class AdminIdentities:
    """Log in, find the session a cookie names, log out; create users (CLI, bootstrap)."""

    def __init__(self, store: AdminUserStore, *, session_ttl_s: float) -> None:
        self.store = store
        self.ttl = timedelta(seconds=session_ttl_s)

    async def create_user(
        self, username: str, password: str, role: str, tenant_id: str | None, *, audit: AuditContext
    ) -> Identity:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        account = await self.store.create_user(
            username, hash_password(password), role, tenant_id, audit=audit
        )
        return Identity.of(account)

    async def bootstrap_owner(self, username: str, password: str) -> bool:
        """The first owner, from the settings, when no admin user exists yet; True if made."""
        if await self.store.count_users() > 0:
            return False
        await self.create_user(username, password, "owner", None, audit=AuditContext(actor="bootstrap"))
        return True

    async def login(self, username: str, password: str, *, audit: AuditContext) -> OpenedSession | None:
        account = await self.store.find_user(username)
        # argon2 takes tens of milliseconds of CPU on purpose: off the event loop.
        stored = account.password_hash if account is not None else await asyncio.to_thread(_dummy_hash)
        matched = await asyncio.to_thread(_verify, stored, password)
        if account is None or account.disabled or not matched:
            failed = AuditContext(
                actor=f"user:{username[:80]}", request_id=audit.request_id, client_ip=audit.client_ip
            )
            await self.store.record(failed, "admin.login_failed", {"username": username[:80]})
            return None
        if _hasher.check_needs_rehash(account.password_hash):
            await self.store.set_password(account.id, _hasher.hash(password), audit=None)
        return await self._open(account, audit)

    async def _open(
        self, account: AdminAccount, audit: AuditContext, details: dict[str, str] | None = None
    ) -> OpenedSession:
        opened = OpenedSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), Identity.of(account))
        as_user = AuditContext(
            actor=opened.identity.actor, request_id=audit.request_id, client_ip=audit.client_ip
        )
        await self.store.open_session(
            account, opened.token, opened.csrf_token, self.ttl, audit=as_user, details=details
        )
        return opened

    async def login_oidc(self, user: OidcUser, *, audit: AuditContext) -> OpenedSession:
        """A session for the admin identity an OIDC login names (docs/governance.md): the user of that
        e-mail (else `oidc:<sub>`), made on first sign-in with the mapped role, whose role follows the
        mapping at each sign-in. Its password hash is a marker no password verifies, naming the
        provider's subject, so a local user of the same name is never taken over."""
        username = user.email or f"oidc:{user.sub}"[:100]
        marker = oidc_marker(user.issuer, user.sub)
        as_user = AuditContext(
            actor=f"user:{username}", request_id=audit.request_id, client_ip=audit.client_ip
        )
        account = await self.store.find_user(username)
        try:
            if account is None:
                account = await self.store.create_user(
                    username, marker, user.role, user.tenant_id, audit=as_user
                )
            elif account.password_hash != marker:
                raise Forbidden(f"The admin user {username!r} is not this identity provider's; ask an owner.")
            elif account.disabled:
                raise Forbidden(f"The admin user {username!r} is disabled.")
            elif (account.role, account.tenant_id) != (user.role, user.tenant_id):
                account = await self.store.set_role(account.id, user.role, user.tenant_id, audit=as_user)
        except AlreadyExists as exc:  # a tenant the mapping names that does not exist (or a race)
            raise Forbidden(
                f"The admin user {username!r} could not be made as {user.role} "
                f"(does the mapped tenant {user.tenant_id!r} exist?); ask an owner."
            ) from exc
        return await self._open(account, audit, {"method": "oidc", "sub": user.sub})

    async def session(self, token: str | None) -> tuple[Identity, str] | None:
        """The identity and CSRF token of a live session, or None (no cookie, expired, logged out,
        user disabled)."""
        if not token:
            return None
        found = await self.store.find_session(token)
        if found is None or found.account.disabled:
            return None
        return Identity.of(found.account), found.csrf_token

    async def logout(self, token: str, identity: Identity, *, audit: AuditContext) -> None:
        account = AdminAccount(
            identity.user_id, identity.username, "", identity.role, identity.tenant_id, False
        )
        await self.store.close_session(token, account, audit=audit)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """What an unknown user's password is checked against, so that an unknown name takes as long as
    a wrong password; made at the first such login, not at import (argon2 takes ~0.2 s)."""
    return _hasher.hash(secrets.token_urlsafe(16))
