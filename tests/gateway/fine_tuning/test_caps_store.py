"""`FineTuningCaps.check` against the jobs table on SQLite and PostgreSQL (the tenant's row locked
`FOR UPDATE` there): what counts as active and as a kept model, the tenant's cap over the
operator's default, a key's own cap, and the errors' status and code."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.auth import Principal
from gateway.errors import APIError
from gateway.services.fine_tuning_caps import FineTuningCaps
from gateway.store import AuditContext, Database, Limits, Store, utcnow
from gateway.store.fine_tuning import FineTuningJobRow
from tests.services import PostgresServer

_names = itertools.count()
_jobs = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"caps_{next(_names)}")
    db = Database(url)
    await db.migrate()
    yield db
    await db.close()


async def _job(db: Database, tenant: str, key: str, status: str, *, adapter: bool = False) -> None:
    number = next(_jobs)
    async with db.session() as session, session.begin():
        session.add(
            FineTuningJobRow(
                id=f"ftjob-{number}",
                tenant_id=tenant,
                created_by=key,
                created_at=utcnow(),
                tags={},
                model="base",
                training_file="file-x",
                seed=1,
                method={"type": "supervised"},
                status=status,
                fine_tuned_model=f"ft:base:{tenant}::{number}" if status == "succeeded" else None,
                adapter_key=f"fine-tuning/{number}/" if adapter else None,
            )
        )


async def _refusal(db: Database, caps: FineTuningCaps, principal: Principal) -> APIError | None:
    try:
        async with db.session() as session, session.begin():
            await caps.check(session, principal, "base")
    except APIError as exc:
        return exc
    return None


async def test_what_counts_and_whose_cap_applies(database: Database) -> None:
    tenant = await Store(database).create_tenant(
        f"caps-{next(_names)}", Limits(), audit=AuditContext(actor="test")
    )
    me = Principal(tenant.id, "key_a", Limits(), Limits())
    caps = FineTuningCaps(max_jobs=2, max_models=4)
    # Finished jobs hold no place; a deleted model (no adapter) is not kept.
    for status in ("failed", "cancelled"):
        await _job(database, tenant.id, "key_a", status)
    await _job(database, tenant.id, "key_a", "succeeded", adapter=False)
    await _job(database, tenant.id, "key_a", "running")
    assert await _refusal(database, caps, me) is None
    await _job(database, tenant.id, "key_b", "queued")
    refused = await _refusal(database, caps, me)
    assert refused is not None and (refused.status, refused.code) == (429, "daily_rate_limit_exceeded")
    assert "maximum of 2 active requests (1 running, 1 pending)" in refused.message
    # The tenant's own cap over the operator's default.
    roomy = Principal(tenant.id, "key_a", Limits(), Limits(fine_tuning_jobs=5))
    assert await _refusal(database, caps, roomy) is None
    # A key's own: two of the tenant's active jobs, one of them this key's.
    tight_key = Principal(tenant.id, "key_a", Limits(fine_tuning_jobs=1), Limits(fine_tuning_jobs=5))
    refused = await _refusal(database, caps, tight_key)
    assert refused is not None and "Your API key has reached the maximum of 1" in refused.message
    # Kept models: two stored plus two active reach a cap of 4.
    for _ in range(2):
        await _job(database, tenant.id, "key_a", "succeeded", adapter=True)
    refused = await _refusal(database, caps, roomy)
    assert refused is not None and (refused.status, refused.code) == (400, "fine_tuned_model_limit_exceeded")
    assert "(2 stored, 2 being trained)" in refused.message
    # Other tenants' jobs count for them only.
    other = Principal("tn_other", None, Limits(), Limits())
    assert await _refusal(database, caps, other) is None
