"""AdapterServing's choices (gateway/services/adapters.py), against vLLM's load and unload routes
answered by an httpx mock (a fake upstream for the gateway's own logic; the real engine's loading
is tested in test_fine_tuning_engine.py): a replica holding an adapter is chosen again, a full
replica unloads its least recently used adapter first, a loaded adapter is marked served (so the
pool routes to it) and an unloaded one no longer, another tenant's model is a 404, deletion unloads
everywhere. Residency across gateway replicas: the engines' model lists parsed, an adapter another
gateway loaded used without a load (found on a re-read after a miss), adapters this replica never
used evicted first, and the one reload-and-retry after the engine's 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.errors import InvalidRequest, ModelNotFound
from gateway.services.adapters import AdapterServing, listed_adapters
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
    """The pool's model lists: each `list_models` call gives the members the next answers queued in
    `answers` (member name -> its cards), as the real pool sets `cards` and `served` from them."""

    def __init__(self, members: list[Member]) -> None:
        self.members = {m.name: m for m in members}
        self.answers: list[dict[str, tuple[dict[str, Any], ...]]] = []
        self.reads = 0

    async def list_models(self, timeout_s: float) -> list[dict[str, Any]]:
        self.reads += 1
        for name, cards in (self.answers.pop(0) if self.answers else {}).items():
            member = self.members[name]
            member.cards, member.served = cards, frozenset(str(c["id"]) for c in cards)
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


def _adapter_card(model: str) -> dict[str, Any]:
    """An adapter as vLLM lists it (gateway/services/adapters.py, `listed_adapters`)."""
    return {"id": model, "object": "model", "root": f"/work/adapters/{model}", "parent": BASE}


def test_the_engines_list_names_its_adapters() -> None:
    cards = [
        {"id": BASE, "object": "model", "root": "/ckpt/tiny", "parent": None, "max_model_len": 1024},
        _adapter_card("ft:qwen2-tiny:t1::a"),
        {"id": "tantra-bench-lora", "root": "/tmp/lora", "parent": BASE},  # not the gateway's
        {"id": "ft:odd", "parent": "ft:odd"},  # its own parent: not an adapter of a base
        {"id": "ft:qwen2-tiny:t2::b", "parent": BASE},
    ]
    assert listed_adapters(cards) == ["ft:qwen2-tiny:t1::a", "ft:qwen2-tiny:t2::b"]
    assert listed_adapters([{"id": BASE}]) == []


async def test_an_adapter_another_gateway_loaded_is_used_as_it_is(
    tmp_path: Path, calls: list[tuple[str, str, str]]
) -> None:
    """A fresh gateway replica (or a restarted one) whose engine list already holds the adapter
    routes to it without loading; one whose list predates another gateway's load finds it on the
    re-read its miss makes, before any load."""
    rows = [_row(job, "t1") for job in ("a", "b")]
    a, b = (row.fine_tuned_model or "" for row in rows)
    member = _member("r1", calls)
    member.cards = (*member.cards, _adapter_card(a))
    pool = Pool([member])
    serving = AdapterServing(Store(rows), Blobs(), pool, tmp_path, slots=2)  # type: ignore[arg-type]
    assert (await serving.resolve("t1", a))["max_model_len"] == 1024
    assert calls == [] and pool.reads == 0
    pool.answers.append({"r1": (*member.cards, _adapter_card(b))})  # another gateway loaded b
    await serving.resolve("t1", b)
    assert calls == [] and pool.reads == 1
    assert serving.held("r1") == [a, b] and b in member.served


async def test_adapters_this_gateway_never_used_are_evicted_first(
    tmp_path: Path, calls: list[tuple[str, str, str]]
) -> None:
    rows = [_row(job, "t1") for job in ("a", "b", "c")]
    a, b, c = (row.fine_tuned_model or "" for row in rows)
    member = _member("r1", calls)
    member.cards = (*member.cards, _adapter_card(c))  # loaded by another gateway replica
    serving = AdapterServing(Store(rows), Blobs(), Pool([member]), tmp_path, slots=2)  # type: ignore[arg-type]
    await serving.resolve("t1", a)
    assert serving.held("r1") == [c, a]
    await serving.resolve("t1", b)
    assert calls == [
        ("r1", "load_lora_adapter", a),
        ("r1", "unload_lora_adapter", c),
        ("r1", "load_lora_adapter", b),
    ]
    assert serving.held("r1") == [a, b] and c not in member.served
    assert (serving.counts.loads, serving.counts.unloads) == (2, 1)


async def test_an_adapter_evicted_before_dispatch_is_reloaded_and_sent_again(
    tmp_path: Path, calls: list[tuple[str, str, str]]
) -> None:
    row = _row("a", "t1")
    a = row.fine_tuned_model or ""
    member = _member("r1", calls)
    pool = Pool([member])
    serving = AdapterServing(Store([row]), Blobs(), pool, tmp_path, slots=1)  # type: ignore[arg-type]
    await serving.resolve("t1", a)
    base_only = tuple(c for c in member.cards if c["id"] == BASE)
    tries: list[int] = []

    async def dispatch() -> str:
        tries.append(len(calls))
        if len(tries) == 1:
            raise ModelNotFound(f"The model `{a}` does not exist.", param="model")
        return "answer"

    pool.answers.append({"r1": base_only})  # the engine's list: another gateway evicted a
    assert await serving.answering("t1", a, dispatch) == "answer"
    assert calls == [("r1", "load_lora_adapter", a), ("r1", "load_lora_adapter", a)]
    assert tries == [1, 2] and serving.counts.reloads == 1 and a in member.served


async def test_the_retry_is_once_and_for_a_missing_adapter_only(
    tmp_path: Path, calls: list[tuple[str, str, str]]
) -> None:
    row = _row("a", "t1")
    a = row.fine_tuned_model or ""
    serving = AdapterServing(Store([row]), Blobs(), Pool([_member("r1", calls)]), tmp_path, slots=1)  # type: ignore[arg-type]
    tries: list[str] = []

    async def missing() -> str:
        tries.append("missing")
        raise ModelNotFound("gone", param="model")

    async def refused() -> str:
        tries.append("refused")
        raise InvalidRequest("bad", param="messages")

    with pytest.raises(ModelNotFound):
        await serving.answering("t1", a, missing)
    assert tries == ["missing", "missing"]
    with pytest.raises(InvalidRequest):
        await serving.answering("t1", a, refused)
    with pytest.raises(ModelNotFound):
        await serving.answering("t1", BASE, missing)  # a base model's 404 is not the gateway's to mend
    assert tries == ["missing", "missing", "refused", "missing"]
