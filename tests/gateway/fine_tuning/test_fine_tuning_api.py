"""The fine-tuning jobs API's refusals and its job's failures, through the real openai SDK and
httpx against a real gateway (Redis, SQLite, local blobs) and the real trainer subprocess; no
engine is needed: a job trains without one. OpenAI's envelope and statuses for a model that cannot
be fine-tuned, a file of the wrong purpose or unknown, bad hyperparameters, an invalid training file
(the job fails at validating_files, naming the lines), another tenant's job; cancelling a running
job stops its trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway import Settings, create_app
from tests.gateway.fine_tuning.conftest import (
    BASE,
    TuningGateway,
    chat_file,
    tuning_settings,
    upload,
    wait_job,
)
from tests.gateway.helpers import AdminClient, bearer, envelope
from tests.servers import ThreadedServer


@pytest.fixture(scope="module")
def api_gateway(
    tiny_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TuningGateway]:
    settings = tuning_settings(gateway_settings, tmp_path_factory.mktemp("ft-api"), tiny_checkpoint)
    with ThreadedServer(create_app(settings)) as server:
        admin = AdminClient(server.url, admin_key)
        yield TuningGateway(server.url, admin, settings.database_url, settings)
        admin.close()


@pytest.fixture(scope="module")
def tenant(api_gateway: TuningGateway) -> tuple[str, openai.OpenAI]:
    secret, _, _ = api_gateway.tenant_key("api")
    return secret, api_gateway.client(secret)


def _post(gateway: TuningGateway, secret: str, body: object) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/fine_tuning/jobs", json=body, headers=bearer(secret), timeout=30)


def test_refusals(api_gateway: TuningGateway, tenant: tuple[str, openai.OpenAI]) -> None:
    secret, client = tenant
    good = upload(client, chat_file("x"))
    batch = upload(client, [{"a": 1}], purpose="batch")
    cases = [
        ({"model": "gpt-9", "training_file": good}, "model", "model_not_available"),
        ({"model": BASE, "training_file": batch}, "training_file", None),
        ({"model": BASE, "training_file": "file-nope"}, "training_file", None),
        ({"model": BASE, "training_file": good, "validation_file": "file-nope"}, "validation_file", None),
        (
            {
                "model": BASE,
                "training_file": good,
                "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
            },
            "method.supervised.hyperparameters.n_epochs",
            None,
        ),
        ({"model": BASE, "training_file": good, "suffix": "has spaces"}, "suffix", None),
        ({"model": BASE}, "training_file", None),
        ({"model": BASE, "training_file": good, "method": {"type": "reinforcement"}}, "method.type", None),
    ]
    for body, param, code in cases:
        error = envelope(_post(api_gateway, secret, body), 400)
        assert error["param"] == param, (body, error)
        if code is not None:
            assert error["code"] == code
    assert client.fine_tuning.jobs.list().data == []


def test_invalid_training_file_fails_the_job(tenant: tuple[str, openai.OpenAI]) -> None:
    _, client = tenant
    bad = [*chat_file("x", 10), {"messages": [{"role": "user", "content": "no answer"}]}]
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, bad))
    failed = wait_job(client, job.id, {"failed", "succeeded"}, timeout=60)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "invalid_training_file"
    assert failed.error.param == "training_file"
    assert "Line 11: Examples must contain at least one assistant message" in failed.error.message
    assert failed.fine_tuned_model is None
    few = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, chat_file("x", 3)))
    failed = wait_job(client, few.id, {"failed", "succeeded"}, timeout=60)
    assert failed.error is not None and "at least 10 examples" in failed.error.message
    # The base's route accepts text only (no `accepts` on it): an image part is the line's problem.
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    seen = [
        *chat_file("x", 10),
        {"messages": [{"role": "user", "content": [image]}, *chat_file("x", 1)[0]["messages"][1:]]},
    ]
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, seen))
    failed = wait_job(client, job.id, {"failed", "succeeded"}, timeout=60)
    assert failed.error is not None and failed.error.code == "invalid_training_file"
    assert (
        "Line 11: messages[0].content[0]: images are not supported for this base model (it takes text only)"
        in failed.error.message
    )


def test_cancel_a_running_job(api_gateway: TuningGateway, tenant: tuple[str, openai.OpenAI]) -> None:
    secret, client = tenant
    job = client.fine_tuning.jobs.create(
        model=BASE,
        training_file=upload(client, chat_file("x")),
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 40}}},
    )
    wait_job(client, job.id, {"running"}, timeout=120)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    again = httpx.post(f"{api_gateway.url}/v1/fine_tuning/jobs/{job.id}/cancel", headers=bearer(secret))
    assert envelope(again, 400)["message"] == f"Job has already completed: {job.id}"
    # The run sees the cancellation and stops its trainer; the job stays cancelled.
    wait_messages = lambda: [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]  # noqa: E731
    import time

    deadline = time.monotonic() + 120  # the run notices between steps; a loaded host makes a step slow
    while "The trainer was stopped" not in wait_messages():
        assert time.monotonic() < deadline, wait_messages()
        time.sleep(0.3)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_another_tenants_job_is_not_found(
    api_gateway: TuningGateway, tenant: tuple[str, openai.OpenAI]
) -> None:
    _, client = tenant
    job = client.fine_tuning.jobs.list().data[0]
    other_secret, _, _ = api_gateway.tenant_key("other")
    for path in ("", "/events", "/checkpoints"):
        answer = httpx.get(
            f"{api_gateway.url}/v1/fine_tuning/jobs/{job.id}{path}", headers=bearer(other_secret)
        )
        assert envelope(answer, 404)["param"] == "fine_tuning_job_id"
    answer = httpx.post(
        f"{api_gateway.url}/v1/fine_tuning/jobs/{job.id}/cancel", headers=bearer(other_secret)
    )
    envelope(answer, 404)
    unauthenticated = httpx.get(f"{api_gateway.url}/v1/fine_tuning/jobs")
    envelope(unauthenticated, 401)
