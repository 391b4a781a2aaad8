"""Adapters' residency across gateway replicas (docs/fine-tuning.md, *Serving*), with real parts:
two gateways sharing one store, blob directory, work directory and Redis (two replicas of one
deployment) in front of the session's LoRA engine (one adapter slot), the openai SDK as client.

Two PEFT adapters with random weights (bench/lora.py's, so no training run is needed) are stored as
succeeded jobs' models of one tenant. Replica 1 loads the first; replica 2, which never used it,
answers with it without loading it; a restarted replica 1 too. Replica 2's request for the second
evicts the first from the one slot, and replica 1's next request for the first still answers as the
first (the engine's 404, a reload, the request sent once more: the client sees none of it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest
from fastapi import FastAPI

from bench.lora import build_adapter
from engine.launcher import EngineProcess
from gateway import Settings, create_app
from gateway.blobs.local import LocalBlobStore
from gateway.services.adapters import ADAPTER_FILES, AdapterCounts, listed_adapters
from gateway.store import Database
from gateway.store.fine_tuning import FineTuningJobRow
from tests.gateway.fine_tuning.conftest import BASE, greedy, tuning_settings
from tests.gateway.helpers import AdminClient
from tests.servers import ThreadedServer

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1200)]


def _engine_adapters(engine: EngineProcess) -> list[str]:
    cards = httpx.get(engine.base_url + "/v1/models", timeout=30).json()["data"]
    return listed_adapters(cards)


def _clear(engine: EngineProcess) -> None:
    """The engine is the session's: adapters other tests left in its slot are unloaded (their
    gateways load them again on their next request)."""
    for name in _engine_adapters(engine):
        httpx.post(engine.base_url + "/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


def _counts(app: FastAPI) -> AdapterCounts:
    counts: AdapterCounts = app.state.components.fine_tuning.adapters.counts
    return counts


async def _store_models(
    settings: Settings, tenant: str, adapters: dict[str, dict[str, bytes]]
) -> dict[str, str]:
    """Each adapter as a succeeded job's model of `tenant`, its files in the blob store, as a
    training run leaves them (gateway/services/fine_tuning_work.py)."""

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        yield data

    blobs = LocalBlobStore(Path(settings.blob_dir))
    database = Database(settings.database_url)
    models: dict[str, str] = {}
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        async with database.session() as session:
            for job, files in adapters.items():
                key = f"fine-tuning/ftjob-{job}/"
                for name in ADAPTER_FILES:
                    await blobs.put(key + name, chunks(files[name]))
                models[job] = f"ft:{BASE}:{tenant}:residency:{job}"
                session.add(
                    FineTuningJobRow(
                        id=f"ftjob-{job}", tenant_id=tenant, created_at=now, model=BASE,
                        training_file="file-residency", suffix="residency", seed=0,
                        method={"type": "supervised"}, status="succeeded",
                        fine_tuned_model=models[job], adapter_key=key, finished_at=now,
                    )
                )  # fmt: skip
            await session.commit()
    finally:
        await database.close()
    return models


@pytest.fixture(scope="module")
def random_adapters(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("residency-adapters")
    return {name: build_adapter(tiny_checkpoint, root / name, seed=seed) for seed, name in enumerate("ab")}


@pytest.fixture
def residency_settings(
    lora_engine: EngineProcess,
    tiny_checkpoint: Path,
    gateway_settings: Callable[..., Settings],
    tmp_path: Path,
) -> Iterator[Settings]:
    _clear(lora_engine)
    yield tuning_settings(
        gateway_settings,
        tmp_path,
        tiny_checkpoint,
        upstreams={"lora": {"url": lora_engine.base_url}},
        fine_tuning_max_loras=1,
    )
    _clear(lora_engine)


def test_replicas_share_what_the_engine_holds(
    residency_settings: Settings,
    random_adapters: dict[str, Path],
    lora_engine: EngineProcess,
    admin_key: str,
) -> None:
    settings = residency_settings
    first_app, second_app = create_app(settings), create_app(settings)
    with ThreadedServer(second_app) as second_server:
        with ThreadedServer(first_app) as first_server:
            admin = AdminClient(first_server.url, admin_key)
            tenant = admin.tenant("residency")["id"]
            secret, _ = admin.key(tenant, "residency")
            admin.close()
            files = {
                job: {n: (d / n).read_bytes() for n in ADAPTER_FILES} for job, d in random_adapters.items()
            }
            models = asyncio.run(_store_models(settings, tenant, files))
            a, b = models["a"], models["b"]

            def client(server: ThreadedServer) -> openai.OpenAI:
                return openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=300)

            first, second = client(first_server), client(second_server)
            answer_a = greedy(first, a)
            assert answer_a != greedy(first, BASE)
            assert _engine_adapters(lora_engine) == [a]
            assert _counts(first_app) == AdapterCounts(loads=1)
            # Replica 2 never used it: the engine's list says where it is; no second load.
            assert greedy(second, a) == answer_a
            assert _counts(second_app) == AdapterCounts()
            assert _engine_adapters(lora_engine) == [a]

        # Replica 1 restarted (a new app on the same store and engine) keeps using the loaded adapter.
        first_app = create_app(settings)
        with ThreadedServer(first_app) as first_server:
            first = client(first_server)
            assert greedy(first, a) == answer_a
            assert _counts(first_app) == AdapterCounts()
            # One slot: replica 2's load of b evicts a, which replica 1 still believes the engine holds.
            answer_b = greedy(second, b)
            assert answer_b != answer_a
            assert _engine_adapters(lora_engine) == [b]
            assert _counts(second_app) == AdapterCounts(loads=1, unloads=1)
            # Replica 1 sends a's request where its list says a is, gets the engine's 404, loads a
            # again (evicting b) and sends the request once more: the client sees the right answer.
            assert greedy(first, a) == answer_a
            assert _counts(first_app) == AdapterCounts(loads=1, unloads=1, reloads=1)
            assert _engine_adapters(lora_engine) == [a]
            # And replica 2, whose list still shows b, gets b back the same way.
            assert greedy(second, b) == answer_b
            assert _counts(second_app) == AdapterCounts(loads=2, unloads=2, reloads=1)
