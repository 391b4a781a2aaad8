"""AdapterServing's choices (gateway/services/adapters.py), against vLLM's load and unload routes
answered by an httpx mock (a fake upstream for the gateway's own logic; the real engine's loading
is tested in test_fine_tuning_engine.py): a replica holding an adapter is chosen again, a full
replica unloads its least recently used adapter first, a loaded adapter is marked served (so the
pool routes to it) and an unloaded one no longer, another tenant's model is a 404, deletion unloads
everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.errors import ModelNotFound
from gateway.services.adapters import AdapterServing
from gateway.store.fine_tuning import FineTuningJobRow
from gateway.upstreams.breaker import CircuitBreaker
from gateway.upstreams.interface import UpstreamSpec
from gateway.upstreams.pool import Member
from gateway.upstreams.vllm import VllmUpstream

BASE = "qwen2-tiny"


class Store:
    def __init__(self, rows: list[FineTuningJobRow]) -> None:
        self.rows = {row.fine_tuned_model: row for row in rows}
        self.forgotten: list[str] = []

    async def model(self, owner: Any, name: str) -> FineTuningJobRow | None:
        row = self.rows.get(name)
        return row if row is not None and row.tenant_id == owner.tenant_id else None

    async def forget_model(self, job_id: str) -> None:
        self.forgotten.append(job_id)


class Blobs:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def _bytes(self, key: str) -> AsyncIterator[bytes]:
        yield key.encode()

    def get(self, key: str) -> AsyncIterator[bytes]:
        return self._bytes(key)

    async def delete(self, key: str) -> None:
        self.deleted.append(key)


class Pool:
    def __init__(self, members: list[Member]) -> None:
        self.members = {m.name: m for m in members}

    async def list_models(self, timeout_s: float) -> list[dict[str, Any]]:
        return []


def _row(job: str, tenant: str) -> FineTuningJobRow:
    return FineTuningJobRow(
        id=f"ftjob-{job}", tenant_id=tenant, model=BASE, fine_tuned_model=f"ft:{BASE}:{tenant}::{job}",
        adapter_key=f"fine-tuning/ftjob-{job}/", status="succeeded", finished_at=datetime(2026, 1, 1),
    )  # fmt: skip


@pytest.fixture
def calls() -> list[tuple[str, str, str]]:
    return []


def _member(name: str, calls: list[tuple[str, str, str]]) -> Member:
    def answer(request: httpx.Request) -> httpx.Response:
        import json

        body = json.loads(request.content)
        calls.append((name, request.url.path.rsplit("/", 1)[-1], body["lora_name"]))
        return httpx.Response(200, text="Success")

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    upstream = VllmUpstream(UpstreamSpec("vllm", f"http://{name}"), client)
    breaker = CircuitBreaker(failures=5, open_s=1)
    cards = ({"id": BASE, "max_model_len": 1024},)
    return Member(name, upstream, breaker, served=frozenset({BASE}), cards=cards)


async def test_least_recently_used_is_unloaded(tmp_path: Path, calls: list[tuple[str, str, str]]) -> None:
    rows = [_row(job, "t1") for job in ("a", "b", "c")]
    member = _member("r1", calls)
    serving = AdapterServing(Store(rows), Blobs(), Pool([member]), tmp_path, slots=2)  # type: ignore[arg-type]
    a, b, c = (row.fine_tuned_model or "" for row in rows)
    card = await serving.resolve("t1", a)
    assert card["id"] == a and card["parent"] == BASE and card["max_model_len"] == 1024
    await serving.resolve("t1", b)
    await serving.resolve("t1", a)  # a is now the most recently used: b goes first
    assert calls == [("r1", "load_lora_adapter", a), ("r1", "load_lora_adapter", b)]
    await serving.resolve("t1", c)
    assert calls[2:] == [("r1", "unload_lora_adapter", b), ("r1", "load_lora_adapter", c)]
    assert serving.held("r1") == [a, c]
    assert member.served == {BASE, a, c}
    assert (tmp_path / "adapters" / "ftjob-a" / "adapter_config.json").read_bytes() == (
        b"fine-tuning/ftjob-a/adapter_config.json"
    )


async def test_a_held_adapter_is_reused_and_spread(tmp_path: Path, calls: list[tuple[str, str, str]]) -> None:
    rows = [_row(job, "t1") for job in ("a", "b")]
    pool = Pool([_member("r1", calls), _member("r2", calls)])
    serving = AdapterServing(Store(rows), Blobs(), pool, tmp_path, slots=1)  # type: ignore[arg-type]
    a, b = (row.fine_tuned_model or "" for row in rows)
    for _ in range(3):
        await serving.resolve("t1", a)
        await serving.resolve("t1", b)
    # Each on its own replica, loaded once: no eviction with a free slot elsewhere.
    assert sorted(calls) == [("r1", "load_lora_adapter", a), ("r2", "load_lora_adapter", b)]


async def test_tenants_and_deletion(tmp_path: Path, calls: list[tuple[str, str, str]]) -> None:
    row = _row("a", "t1")
    store, blobs = Store([row]), Blobs()
    serving = AdapterServing(store, blobs, Pool([_member("r1", calls)]), tmp_path, slots=1)  # type: ignore[arg-type]
    name = row.fine_tuned_model or ""
    with pytest.raises(ModelNotFound):
        await serving.resolve("t2", name)
    assert not await serving.delete("t2", name)
    await serving.resolve("t1", name)
    assert await serving.delete("t1", name)
    assert calls[-1] == ("r1", "unload_lora_adapter", name)
    assert store.forgotten == ["ftjob-a"]
    assert blobs.deleted == [
        "fine-tuning/ftjob-a/adapter_config.json",
        "fine-tuning/ftjob-a/adapter_model.safetensors",
    ]
