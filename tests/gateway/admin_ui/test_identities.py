"""Admin identities on a real SQLite store: argon2 hashes, what each role may do, logins audited
(failed ones too), sessions that end (expiry, logout, a disabled user), the CSRF comparison, and the
bootstrap owner made once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from gateway.auth.identities import (
    AdminIdentities,
    Forbidden,
    Identity,
    csrf_matches,
    hash_password,
)
from gateway.errors import NotFound
from gateway.store import AuditContext, Database, Limits, Store
from gateway.store.admin_users import AdminSession, AdminUser, AdminUserStore, token_digest

PASSWORD = "correct horse battery"
FROM = AuditContext(actor="anonymous", request_id="req_1", client_ip="192.0.2.7")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Database, AdminIdentities]]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await database.migrate()
    yield database, AdminIdentities(AdminUserStore(database), session_ttl_s=60)
    await database.close()


def person(role: str, tenant_id: str | None = None) -> Identity:
    return Identity("adm_1", "alice", role, tenant_id)


@pytest.mark.parametrize(
    ("role", "writes", "every_tenant"),
    [
        ("owner", True, True),
        ("operator", True, True),
        ("auditor", False, True),
        ("tenant_admin", True, False),
    ],
)
def test_roles(role: str, writes: bool, every_tenant: bool) -> None:
    me = person(role, "tn_mine" if role == "tenant_admin" else None)
    assert me.can_write is writes
    assert me.all_tenants is every_tenant
    assert me.sees_tenant("tn_mine")
    assert me.sees_tenant("tn_other") is every_tenant
    assert me.actor == "user:alice"


def test_auditor_changes_nothing() -> None:
    with pytest.raises(Forbidden):
        person("auditor").require_write()
    with pytest.raises(Forbidden):
        person("auditor").require_all_tenants()


def test_tenant_admin_stays_in_its_tenant() -> None:
    me = person("tenant_admin", "tn_mine")
    me.require_tenant("tn_mine")
    me.require_write()
    with pytest.raises(NotFound):  # another tenant looks missing, not forbidden
        me.require_tenant("tn_other")
    with pytest.raises(Forbidden):  # the tenant's own limits are the operator's ceiling
        me.require_all_tenants()


def test_passwords_are_argon2id_and_long_enough() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert hash_password(PASSWORD) != hashed  # salted
    with pytest.raises(ValueError, match="12 characters"):
        hash_password("short")


def test_csrf_comparison() -> None:
    assert csrf_matches("abc123", "abc123")
    assert not csrf_matches("abc123", "abc124")
    assert not csrf_matches("abc123", None)
    assert not csrf_matches("abc123", "")


async def test_login_session_logout_audited(store: tuple[Database, AdminIdentities]) -> None:
    database, identities = store
    await identities.create_user("alice", PASSWORD, "operator", None, audit=AuditContext(actor="cli"))
    assert await identities.login("alice", "wrong password!!", audit=FROM) is None
    assert await identities.login("nobody", PASSWORD, audit=FROM) is None
    opened = await identities.login("alice", PASSWORD, audit=FROM)
    assert opened is not None and opened.identity.role == "operator"
    found = await identities.session(opened.token)
    assert found == (opened.identity, opened.csrf_token)
    # The cookie's token itself is never stored, only its digest.
    async with database.session() as session:
        assert (await session.scalars(select(AdminSession.token_hash))).all() == [token_digest(opened.token)]
    assert await identities.session("not-a-session") is None
    assert await identities.session(None) is None
    await identities.logout(opened.token, opened.identity, audit=FROM)
    assert await identities.session(opened.token) is None

    events = await identities.store.audit_page(limit=20)
    seen = [(e.action, e.actor, e.client_ip) for e in reversed(events)]
    assert seen == [
        ("admin_user.create", "cli", None),
        ("admin.login_failed", "user:alice", "192.0.2.7"),
        ("admin.login_failed", "user:nobody", "192.0.2.7"),
        ("admin.login", "user:alice", "192.0.2.7"),
        ("admin.logout", "anonymous", "192.0.2.7"),
    ]
    async with database.session() as session:
        assert (await session.scalars(select(AdminSession.token_hash))).all() == []


async def test_sessions_expire_and_disabled_users_are_out(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await database.migrate()
    try:
        short = AdminIdentities(AdminUserStore(database), session_ttl_s=0.5)
        await short.create_user("bob", PASSWORD, "auditor", None, audit=AuditContext(actor="cli"))
        opened = await short.login("bob", PASSWORD, audit=FROM)
        assert opened is not None and await short.session(opened.token) is not None
        await asyncio.sleep(0.7)
        assert await short.session(opened.token) is None

        again = await short.login("bob", PASSWORD, audit=FROM)
        assert again is not None
        async with database.session() as session:
            await session.execute(update(AdminUser).values(disabled=True))
            await session.commit()
        assert await short.session(again.token) is None
        assert await short.login("bob", PASSWORD, audit=FROM) is None
    finally:
        await database.close()


async def test_tenant_admin_needs_its_tenant(store: tuple[Database, AdminIdentities]) -> None:
    database, identities = store
    tenant = await Store(database).create_tenant("acme", Limits(), audit=AuditContext())
    with pytest.raises(ValueError, match="needs a tenant"):
        await identities.create_user("carol", PASSWORD, "tenant_admin", None, audit=FROM)
    with pytest.raises(ValueError, match="needs a tenant"):
        await identities.create_user("carol", PASSWORD, "operator", tenant.id, audit=FROM)
    with pytest.raises(ValueError, match="role must be"):
        await identities.create_user("carol", PASSWORD, "root", None, audit=FROM)
    carol = await identities.create_user("carol", PASSWORD, "tenant_admin", tenant.id, audit=FROM)
    assert carol.tenant_id == tenant.id


async def test_bootstrap_owner_only_once(store: tuple[Database, AdminIdentities]) -> None:
    _, identities = store
    assert await identities.bootstrap_owner("root", PASSWORD)
    assert not await identities.bootstrap_owner("root2", PASSWORD)
    opened = await identities.login("root", PASSWORD, audit=FROM)
    assert opened is not None and opened.identity.role == "owner"
    assert await identities.login("root2", PASSWORD, audit=FROM) is None


async def test_the_migration_makes_the_tables_the_models_describe(
    store: tuple[Database, AdminIdentities],
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    database, _ = store
    async with database.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), AdminUser.metadata)
        )
    assert [change for change in diff if "admin_" in str(change)] == []
