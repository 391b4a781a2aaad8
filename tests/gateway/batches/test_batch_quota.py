"""The batch token quota (OpenAI's enqueued tokens) against a real store, SQLite and PostgreSQL: the
estimate of a batch's input tokens, the key's and the tenant's quotas and the operator's default,
counted over batches not yet ended (an ended batch releases its tokens), and OpenAI's error item."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.services.batch_quota import BatchQuota, input_tokens
from gateway.store import AuditContext, Database, Limits, Store, utcnow
from gateway.store.batches import COMPLETED, IN_PROGRESS, VALIDATING, Batch
from tests.services import PostgresServer

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"batch_quota_{next(_names)}")
    database = Database(url)
    await database.migrate()
    yield Store(database)
    await database.close()


async def _key(store: Store, tenant_id: str, batch_tokens: int | None) -> str:
    key = await store.create_key(
        tenant_id,
        name="k",
        key_hash=secrets.token_hex(32),
        redacted="sk-…",
        limits=Limits(batch_tokens=batch_tokens),
        expires_at=None,
        audit=AuditContext(),
    )
    return key.id


async def _batch(store: Store, tenant_id: str, key_id: str, status: str, tokens: int) -> Batch:
    now = utcnow()
    batch = Batch(
        id=f"batch_{secrets.token_hex(6)}",
        tenant_id=tenant_id,
        created_by=key_id,
        created_at=now,
        tags={},
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        completion_window="24h",
        status=status,
        total=0,
        completed=0,
        failed=0,
        expires_at=now + timedelta(days=1),
        enqueued_tokens=tokens,
    )
    async with store.db.session() as session, session.begin():
        session.add(batch)
    return batch


async def _refusal(store: Store, quota: BatchQuota, batch: Batch, tokens: int) -> dict[str, object] | None:
    async with store.db.session() as session, session.begin():
        return await quota.refusal(session, batch, tokens)


def test_input_tokens_count_every_endpoint_s_input() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 1000}
    # The JSON of one message (~65 characters, 17 tokens) and 4 tokens for the message itself.
    assert 18 <= input_tokens([chat]) <= 25
    assert input_tokens([{"prompt": "x" * 400}]) == 100
    assert input_tokens([{"input": "x" * 40, "instructions": "y" * 8}]) == 12
    assert input_tokens([{"input": ["ab", "cd"]}]) == 3  # '["ab","cd"]': 11 characters
    assert input_tokens([{"model": "m"}] * 3) == 0  # nothing to read: no input tokens
    assert input_tokens([{"prompt": "x" * 40}] * 5) == 50


async def test_key_quota_counts_batches_not_yet_ended(store: Store) -> None:
    tenant = await store.create_tenant(f"t{next(_names)}", Limits(), audit=AuditContext())
    key = await _key(store, tenant.id, 1000)
    other_key = await _key(store, tenant.id, None)
    quota = BatchQuota()
    await _batch(store, tenant.id, key, IN_PROGRESS, 600)
    await _batch(store, tenant.id, key, COMPLETED, 5000)  # ended: released
    await _batch(store, tenant.id, other_key, IN_PROGRESS, 5000)  # another key's
    new = await _batch(store, tenant.id, key, VALIDATING, 0)
    assert await _refusal(store, quota, new, 400) is None  # 600 + 400 = the quota
    refused = await _refusal(store, quota, new, 401)
    assert refused is not None
    assert (refused["code"], refused["param"], refused["line"]) == ("token_limit_exceeded", None, None)
    assert "Limit: 1,000 enqueued tokens" in str(refused["message"])
    # The other key has no quota of its own and the operator set none.
    assert (
        await _refusal(store, quota, await _batch(store, tenant.id, other_key, VALIDATING, 0), 10**9) is None
    )


async def test_operator_default_and_tenant_quota(store: Store) -> None:
    tenant = await store.create_tenant(f"t{next(_names)}", Limits(batch_tokens=3000), audit=AuditContext())
    own = await _key(store, tenant.id, 10_000)
    plain = await _key(store, tenant.id, None)
    default = BatchQuota(default_key_quota=500)
    # A key without its own quota gets the operator's default; a key's own quota replaces it.
    assert (
        await _refusal(store, default, await _batch(store, tenant.id, plain, VALIDATING, 0), 501) is not None
    )
    assert await _refusal(store, default, await _batch(store, tenant.id, own, VALIDATING, 0), 2000) is None
    # The tenant's quota sums every key's batches not ended: 2500 enqueued of its 3000.
    await _batch(store, tenant.id, own, IN_PROGRESS, 2000)
    await _batch(store, tenant.id, plain, IN_PROGRESS, 500)
    refused = await _refusal(store, default, await _batch(store, tenant.id, own, VALIDATING, 0), 501)
    assert refused is not None and "organization" in str(refused["message"])
    assert await _refusal(store, default, await _batch(store, tenant.id, own, VALIDATING, 0), 500) is None
