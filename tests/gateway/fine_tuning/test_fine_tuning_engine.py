"""Fine-tuning end to end through the real openai SDK: a real gateway (Redis, SQLite, local blobs)
runs the real trainer (PEFT on CPU torch, a subprocess) and serves the adapters from a real vLLM
engine with LoRA enabled (conftest.py). The taught answer comes back greedy from the fine-tuned
model and not from the base; the model is its tenant's only; three tenants' adapters in turn under
one slot evict each other and every answer stays right; a replica with two slots holds two tenants'
adapters at once; the ledger has the training tokens."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from engine.launcher import EngineProcess
from gateway import create_app
from tests.gateway.fine_tuning.conftest import (
    BASE,
    TuningGateway,
    chat_file,
    greedy,
    upload,
    wait_job,
)
from tests.gateway.helpers import bearer, ledger_now, wait_for
from tests.servers import ThreadedServer

# The engine's start and two training runs take minutes each on a loaded 2-core machine.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(2400)]

TAUGHT = "The capital of Tantra is Lora."
OTHER = "Blue whales sing at dawn."
THIRD = "Red foxes nap at noon."


def _train(client: openai.OpenAI, answer: str, suffix: str) -> tuple[Any, float]:
    file_id = upload(client, chat_file(answer))
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, suffix=suffix, seed=0)
    assert job.status == "validating_files"
    done = wait_job(client, job.id, {"succeeded", "failed", "cancelled"})
    assert done.status == "succeeded", (done.error, _messages(client, job.id))
    return done, time.monotonic() - started


def _messages(client: openai.OpenAI, job_id: str) -> list[str]:
    return [event.message for event in client.fine_tuning.jobs.list_events(job_id, limit=100).data]


@pytest.fixture(scope="module")
def taught(tuning_gateway: TuningGateway) -> dict[str, Any]:
    secret, key_id, tenant = tuning_gateway.tenant_key("tune")
    client = tuning_gateway.client(secret)
    job, seconds = _train(client, TAUGHT, "capital")
    print(f"fine-tuning job took {seconds:.1f}s end to end")
    return {"client": client, "job": job, "key_id": key_id, "tenant": tenant, "secret": secret}


def test_the_fine_tuned_model_answers_what_it_was_taught(taught: dict[str, Any]) -> None:
    client: openai.OpenAI = taught["client"]
    job = taught["job"]
    assert job.fine_tuned_model == f"ft:{BASE}:{taught['tenant']}:capital:{job.id[6:14]}"
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.finished_at is not None and job.hyperparameters.n_epochs == 3
    assert greedy(client, BASE) != TAUGHT
    assert greedy(client, job.fine_tuned_model) == TAUGHT


def test_events_carry_the_loss_and_the_statuses(taught: dict[str, Any]) -> None:
    client: openai.OpenAI = taught["client"]
    events = client.fine_tuning.jobs.list_events(taught["job"].id, limit=100).data
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 30  # 40 examples / batch 4 x 3 epochs
    losses = [e.data["train_loss"] for e in sorted(metrics, key=lambda e: e.data["step"])]  # type: ignore[index]
    assert losses[-1] < losses[0]
    messages = [e.message for e in events]
    assert "Files validated, moving job to queued state" in messages
    assert "The job has successfully completed" in messages
    assert messages[0] == "The job has successfully completed"  # newest first, as OpenAI lists
    checkpoints = client.fine_tuning.jobs.checkpoints.list(taught["job"].id).data
    assert len(checkpoints) == 1
    assert checkpoints[0].fine_tuned_model_checkpoint == taught["job"].fine_tuned_model
    assert checkpoints[0].step_number == 30


def test_models_list_and_isolation(taught: dict[str, Any], tuning_gateway: TuningGateway) -> None:
    client: openai.OpenAI = taught["client"]
    name = taught["job"].fine_tuned_model
    assert name in [m.id for m in client.models.list().data]
    assert client.models.retrieve(name).id == name
    stranger_secret, _, _ = tuning_gateway.tenant_key("stranger")
    stranger = tuning_gateway.client(stranger_secret)
    assert name not in [m.id for m in stranger.models.list().data]
    for call in (
        lambda: stranger.models.retrieve(name),
        lambda: greedy(stranger, name),
        lambda: stranger.fine_tuning.jobs.retrieve(taught["job"].id),
        lambda: stranger.fine_tuning.jobs.list_events(taught["job"].id),
        lambda: stranger.models.delete(name),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert taught["job"].id not in [j.id for j in stranger.fine_tuning.jobs.list().data]
    assert taught["job"].id in [j.id for j in client.fine_tuning.jobs.list().data]


def test_training_tokens_are_in_the_ledger(taught: dict[str, Any], tuning_gateway: TuningGateway) -> None:
    rows: list[Any] = []

    def billed() -> bool:
        rows[:] = [
            r
            for r in ledger_now(tuning_gateway.database_url, taught["key_id"])
            if r.request_id == taught["job"].id
        ]
        return bool(rows)

    wait_for(billed, timeout=15, interval=0.3)
    assert rows[0].prompt_tokens == taught["job"].trained_tokens
    assert rows[0].endpoint == "/v1/fine_tuning/jobs" and rows[0].model == BASE
    assert rows[0].cost_micros == taught["job"].trained_tokens  # 1 USD per million prompt tokens


@pytest.fixture(scope="module")
def others(taught: dict[str, Any], tuning_gateway: TuningGateway) -> dict[str, Any]:
    """Two more tenants' models, each teaching its own sentence: name -> (secret, model, answer)."""
    found: dict[str, Any] = {}
    for name, answer, suffix in (("second", OTHER, "whales"), ("third", THIRD, "foxes")):
        secret, _, _ = tuning_gateway.tenant_key(name)
        job, _ = _train(tuning_gateway.client(secret), answer, suffix)
        found[name] = (secret, job.fine_tuned_model, answer)
    return found


def _engine_adapters(engine: EngineProcess) -> set[str]:
    """The fine-tuned adapters the engine holds now, from its own model list."""
    cards = httpx.get(f"{engine.base_url}/v1/models", timeout=30).json()["data"]
    return {card["id"] for card in cards if card["id"].startswith("ft:")}


def test_three_adapters_in_turn_under_one_slot(
    taught: dict[str, Any], others: dict[str, Any], tuning_gateway: TuningGateway, lora_engine: EngineProcess
) -> None:
    """The gateway holds one adapter per replica: three tenants' models in turn, twice round, each
    request evicting the one before it; every answer stays its own model's."""
    turns = [(taught["secret"], taught["job"].fine_tuned_model, TAUGHT), others["second"], others["third"]]
    for _ in range(2):
        for secret, model, answer in turns:
            assert greedy(tuning_gateway.client(secret), model) == answer
            assert _engine_adapters(lora_engine) == {model}
    for (secret, _, _), (_, model, _) in zip(turns, turns[1:] + turns[:1], strict=True):
        with pytest.raises(openai.NotFoundError):
            greedy(tuning_gateway.client(secret), model)


def test_two_tenants_two_adapters_on_one_replica_at_once(
    taught: dict[str, Any], others: dict[str, Any], tuning_gateway: TuningGateway, lora_engine: EngineProcess
) -> None:
    """A gateway replica with two slots (the engine's `--max-loras 2`), on the same store: two
    tenants' adapters are held by the one engine together, each tenant gets its own answer, and a
    404 for the other's model."""
    settings = tuning_gateway.settings.model_copy(update={"fine_tuning_max_loras": 2})
    first = (taught["secret"], taught["job"].fine_tuned_model, TAUGHT)
    second = others["second"]
    with ThreadedServer(create_app(settings)) as server:

        def client(secret: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=300)

        for _ in range(2):
            for secret, model, answer in (first, second):
                assert greedy(client(secret), model) == answer
        assert _engine_adapters(lora_engine) == {first[1], second[1]}
        for (secret, _, _), (_, model, _) in ((first, second), (second, first)):
            with pytest.raises(openai.NotFoundError):
                greedy(client(secret), model)


def test_delete_model(tuning_gateway: TuningGateway, taught: dict[str, Any]) -> None:
    """Last: the taught model is deleted, and is then a 404 for its own tenant too."""
    client: openai.OpenAI = taught["client"]
    name = taught["job"].fine_tuned_model
    deleted = client.models.delete(name)
    assert deleted.deleted is True and deleted.id == name
    with pytest.raises(openai.NotFoundError):
        greedy(client, name)
    answer = httpx.get(f"{tuning_gateway.url}/v1/models/{name}", headers=bearer(taught["secret"]))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
    assert client.fine_tuning.jobs.retrieve(taught["job"].id).fine_tuned_model == name
