"""The per-tenant caps on fine-tuning (issue 20 point 6) against a real gateway (Redis, SQLite, the
admin API, the openai SDK), no engine and no training (`jobs_enabled` off: jobs stay
validating_files, active): active jobs past the cap are OpenAI's 429 (`daily_rate_limit_exceeded`,
the SDK's RateLimitError) for the operator's default, a tenant's own cap, and a key's; stored models
(active jobs counted) past the cap are a 400 until a model is deleted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway import Settings, create_app
from gateway.store import Database, utcnow
from gateway.store.fine_tuning import FineTuningJobRow
from tests.gateway.fine_tuning.conftest import BASE, TuningGateway, chat_file, tuning_settings, upload
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def caps_gateway(
    tiny_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TuningGateway]:
    settings = tuning_settings(
        gateway_settings,
        tmp_path_factory.mktemp("ft-caps"),
        tiny_checkpoint,
        jobs_enabled=False,
        fine_tuning_max_jobs=2,
    )
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield TuningGateway(server.url, admin, settings.database_url, settings)
        admin.close()


def _create(client: openai.OpenAI, file_id: str) -> str:
    return client.fine_tuning.jobs.create(model=BASE, training_file=file_id).id


def _refused(gateway: TuningGateway, secret: str, file_id: str, status: int) -> dict[str, object]:
    answer = httpx.post(
        f"{gateway.url}/v1/fine_tuning/jobs",
        json={"model": BASE, "training_file": file_id},
        headers=bearer(secret),
        timeout=30,
    )
    return envelope(answer, status)


def test_the_operators_default_caps_active_jobs(caps_gateway: TuningGateway) -> None:
    secret, _, _ = caps_gateway.tenant_key("default-cap")
    client = caps_gateway.client(secret)
    file_id = upload(client, chat_file("x", 10))
    first, _ = _create(client, file_id), _create(client, file_id)
    with pytest.raises(openai.RateLimitError) as raised:
        _create(client, file_id)
    assert raised.value.code == "daily_rate_limit_exceeded"
    error = _refused(caps_gateway, secret, file_id, 429)
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert "maximum of 2 active requests (0 running, 2 pending)" in str(error["message"])
    # A cancelled job frees its place; refused creations left no job behind.
    client.fine_tuning.jobs.cancel(first)
    _create(client, file_id)
    assert len(client.fine_tuning.jobs.list().data) == 3


def test_a_tenants_own_cap_and_a_keys(caps_gateway: TuningGateway) -> None:
    admin = caps_gateway.admin
    tenant = admin.tenant(f"own-cap-{time.monotonic_ns()}", fine_tuning_jobs=1)
    assert tenant["limits"]["fine_tuning_jobs"] == 1 and tenant["limits"]["fine_tuning_models"] is None
    secret, _ = admin.key(tenant["id"], "a")
    client = caps_gateway.client(secret)
    file_id = upload(client, chat_file("x", 10))
    _create(client, file_id)
    assert "maximum of 1 active requests" in str(_refused(caps_gateway, secret, file_id, 429)["message"])
    # Raised by the admin API: the key cache follows the change.
    admin.patch_tenant(tenant["id"], fine_tuning_jobs=5)
    deadline = time.monotonic() + 10
    while True:
        try:
            _create(client, file_id)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    # A key's own cap, under a tenant with room to spare; the tenant's other keys are not held.
    capped, key = admin.key(tenant["id"], "capped", fine_tuning_jobs=1)
    assert key["limits"]["fine_tuning_jobs"] == 1
    capped_client = caps_gateway.client(capped)
    _create(capped_client, file_id)
    error = _refused(caps_gateway, capped, file_id, 429)
    assert "Your API key has reached the maximum of 1 active requests" in str(error["message"])
    _create(client, file_id)


def _succeeded(database_url: str, tenant_id: str, key_id: str, name: str) -> None:
    """A finished job's model, as a run that succeeded leaves it (no trainer here)."""

    async def write() -> None:
        database = Database(database_url)
        try:
            async with database.session() as session, session.begin():
                session.add(
                    FineTuningJobRow(
                        id="ftjob-" + name,
                        tenant_id=tenant_id,
                        created_by=key_id,
                        created_at=utcnow(),
                        tags={},
                        model=BASE,
                        training_file="file-x",
                        seed=1,
                        method={"type": "supervised", "supervised": {"hyperparameters": {}}},
                        status="succeeded",
                        fine_tuned_model=f"ft:{BASE}:{tenant_id}::{name}",
                        adapter_key=f"fine-tuning/ftjob-{name}/",
                        finished_at=utcnow(),
                    )
                )
        finally:
            await database.close()

    asyncio.run(write())


def test_stored_models_cap_counts_active_jobs_until_a_model_is_deleted(
    caps_gateway: TuningGateway,
) -> None:
    admin = caps_gateway.admin
    tenant = admin.tenant(f"models-cap-{time.monotonic_ns()}", fine_tuning_models=2)
    secret, key = admin.key(tenant["id"], "a")
    client = caps_gateway.client(secret)
    name = f"m{time.monotonic_ns()}"
    _succeeded(caps_gateway.database_url, tenant["id"], key["id"], name)
    file_id = upload(client, chat_file("x", 10))
    _create(client, file_id)  # one stored, one on its way: the cap of 2 is reached
    with pytest.raises(openai.BadRequestError) as raised:
        _create(client, file_id)
    assert raised.value.code == "fine_tuned_model_limit_exceeded"
    error = _refused(caps_gateway, secret, file_id, 400)
    assert "limit of 2 fine-tuned models (1 stored, 1 being trained)" in str(error["message"])
    deleted = client.models.delete(f"ft:{BASE}:{tenant['id']}::{name}")
    assert deleted.deleted
    _create(client, file_id)
