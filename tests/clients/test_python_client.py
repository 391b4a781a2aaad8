"""The Python client against the real gateway and engine of the session: chat and a stream through
the SDK's own objects, an admin flow (tenant, key, usage read back, audit), upstream health, and a
429 surfacing as RateLimitError with the gateway's Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from tantra_client import AsyncTantra, RateLimitError, Tantra, retry_after, types

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client(gateway_url: str, admin_key: str, api_key: str) -> Iterator[Tantra]:
    with Tantra(
        base_url=gateway_url, api_key=api_key, admin_key=admin_key, max_retries=0, timeout=120
    ) as tantra:
        yield tantra


def _exact_fields(answer: dict[str, object], model: type[types.BaseModel]) -> None:
    """The gateway's answer has the client model's fields, no fewer and no more (drift)."""
    assert set(answer) == set(model.model_fields), model.__name__


def test_chat_and_stream_through_the_sdk_objects(client: Tantra, model: str) -> None:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=5
    )
    assert answer.choices[0].message.content is not None
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=5, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces)


def test_admin_flow_creates_a_tenant_and_key_and_reads_usage_back(
    client: Tantra, gateway_url: str, model: str
) -> None:
    name = f"client-{uuid.uuid4().hex[:8]}"
    tenant = client.admin.tenants.create(name, tpm=100_000)
    assert tenant.name == name and tenant.limits.tpm == 100_000
    _exact_fields(client.admin.tenants.retrieve(tenant.id).model_dump(exclude_unset=True), types.Tenant)
    key = client.admin.keys.create(tenant.id, name="ci", rpm=50)
    assert key.key and key.status == "active" and key.limits.rpm == 50
    assert key.model_dump(exclude_unset=True).keys() == types.ApiKey.model_fields.keys()
    assert [k.id for k in client.admin.keys.list(tenant_id=tenant.id)] == [key.id]

    with Tantra(base_url=gateway_url, api_key=key.key, max_retries=0, timeout=120) as user:
        user.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    report = client.admin.usage(group_by=["key"], key_id=key.id)
    assert report.group_by == ["key"]
    [row] = report.data
    assert row["key_id"] == key.id and row["requests"] == 1 and row["completion_tokens"] > 0
    assert client.admin.usage_csv(group_by=["key"], key_id=key.id).startswith("key_id,requests")

    updated = client.admin.tenants.update(tenant.id, tpm=None, disabled=True)
    assert updated.disabled and updated.limits.tpm is None
    revoked = client.admin.keys.revoke(key.id)
    assert revoked.status == "revoked"
    actions = [e.action for e in client.admin.audit.iter(page_size=2, target_id=key.id)]
    assert len(actions) >= 2  # created and revoked, over pages of two
    for event in client.admin.audit.list(limit=1):
        _exact_fields(event.model_dump(exclude_unset=True), types.AuditEvent)


def test_upstream_health(client: Tantra, model: str) -> None:
    health = client.health.upstreams()
    assert not health.draining
    assert any(model in upstream.models for upstream in health.upstreams.values())
    assert all(u.state == "closed" for u in health.upstreams.values())


def test_a_429_surfaces_with_retry_after(client: Tantra, gateway_url: str, model: str) -> None:
    tenant = client.admin.tenants.create(f"limited-{uuid.uuid4().hex[:8]}")
    key = client.admin.keys.create(tenant.id, rpm=1)
    assert key.key
    with Tantra(base_url=gateway_url, api_key=key.key, max_retries=0, timeout=120) as user:
        user.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        with pytest.raises(RateLimitError) as refused:
            user.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
    error = refused.value
    assert error.status_code == 429 and error.type and error.message
    wait = retry_after(error)
    assert wait is not None and 0 < wait <= 60
    assert int(error.response.headers["retry-after"]) >= 1


async def test_async_client_chat_and_admin(
    gateway_url: str, admin_key: str, api_key: str, model: str
) -> None:
    async with AsyncTantra(
        base_url=gateway_url, api_key=api_key, admin_key=admin_key, max_retries=0, timeout=120
    ) as client:
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text
        tenant = await client.admin.tenants.create(f"async-{uuid.uuid4().hex[:8]}")
        assert (await client.admin.tenants.retrieve(tenant.id)).id == tenant.id
        assert [e async for e in client.admin.audit.iter(page_size=1, target_id=tenant.id)]
        assert (await client.health.upstreams()).upstreams
