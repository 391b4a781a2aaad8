"""The memory bench's chat row: time to first token of a streamed chat through the gateway with
memory on (the request names an end user holding `memories` memories, so the gateway embeds the
last user message through the embedding engine, searches the user's memories, records the recall
and places the best in a system message) against the same chat with memory off (no end user),
alternating request by request so the machine's other load falls on both alike.

Real parts: vLLM on the tiny checkpoint for chat, vLLM's pooling runner on all-MiniLM-L6-v2 for
embeddings (or, with `embedding_model` minilm-static, the gateway's own static model and no
embedding engine), the gateway as deployed (SQLite store, FAISS backend, auth off: the anonymous tenant,
memory in chat on by default, extraction from chats off: see `gateway_settings`). The user's
memories are written straight into the gateway's store (the retrieval set's facts with their real
vectors, the rest synthetic vectors), before the first chat, so the gateway builds its index from
SQL as after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

from bench import memory_static, servers
from bench.batch_latency import MODEL, chat_body
from bench.memory_set import EMBEDDING_MODEL, Pair, filler
from bench.memory_static import STATIC_MODEL
from bench.procs import Service, free_port
from bench.stats import percentile

USER = "bench-user"
TARGET_MS = 15.0


@dataclass(frozen=True)
class ChatPlan:
    memories: int = 10_000
    chats: int = 60  # measured per side, after the warm-up
    warmup: int = 4
    max_tokens: int = 4
    # The memory embedding model: MiniLM on its engine, or `minilm-static`, which the gateway
    # computes in process (TANTRA_LOCAL_EMBEDDING_MODELS; bench/memory_static.py).
    embedding_model: str = EMBEDDING_MODEL


def _engine(name: str, logs: Path, cpus: list[int], **config: Any) -> tuple[Service, str]:
    from engine.launcher import EngineConfig

    made = EngineConfig(port=free_port(), **config)
    service = Service(
        name,
        made.command(),
        ready_url=made.base_url + "/health",
        log_path=logs / f"{name}.log",
        env=made.environment(),
        cpus=cpus,
        cwd=servers.ROOT,
        ready_timeout_s=900.0,
    )
    return service, made.base_url


def embedding_engine(logs: Path, cpus: list[int]) -> tuple[Service, str]:
    from engine.checkpoint import ensure_checkpoint

    checkpoint = ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / "minilm", preset="minilm")
    return _engine(
        "memory-embedding-engine",
        logs,
        cpus,
        model_dir=checkpoint,
        served_model_name=EMBEDDING_MODEL,
        max_model_len=None,
        dtype="float32",
        runner="pooling",
        # Its OpenMP threads on the last core, the chat engine's on the first: with vLLM's CPU
        # defaults both bound core 0, and an embedding sent right after a chat waited 0.1-1 s for
        # the chat engine to let go of it (docs/memory.md, "where the time went").
        cpu_cores=str(cpus[-1]),
    )


def gateway_settings(
    state: Path, chat_url: str, embedding_url: str | None, embedding_model: str = EMBEDDING_MODEL
) -> dict[str, str]:
    """The memory gateway's TANTRA_* settings; `embedding_url` None: no embedding engine (the
    static model is the gateway's own)."""
    state.mkdir(parents=True, exist_ok=True)
    upstreams = {"engine": {"url": chat_url}}
    if embedding_url is not None:
        upstreams["embedding"] = {"url": embedding_url}
    local = {STATIC_MODEL: str(memory_static.checkpoint())} if embedding_model == STATIC_MODEL else {}
    return {
        "TANTRA_LOCAL_EMBEDDING_MODELS": json.dumps(local),
        "TANTRA_AUTH_ENABLED": "false",
        "TANTRA_DATABASE_URL": f"sqlite+aiosqlite:///{state / f'memory-{free_port()}.db'}",
        "TANTRA_BLOB_DIR": str(state / "blobs"),
        "TANTRA_UPSTREAMS": json.dumps(upstreams),
        "TANTRA_ROUTING": json.dumps({"default_model": MODEL}),
        "TANTRA_MEMORY_CHAT_DEFAULT": "true",
        "TANTRA_MEMORY_EMBEDDING_MODEL": embedding_model,
        # No extraction from the measured chats: this row times the request path of a recall. Each
        # memory-on chat's background extraction would run on the chat engine beside the next
        # measured chats (engine time, not memory's) and write into the measured user's memories
        # (the 10,001st turns the FAISS index into HNSW mid-run, so the row would no longer be at
        # 10k memories, nor flat). docs/memory.md, "Benchmark".
        "TANTRA_MEMORY_CHAT_EXTRACT": "false",
    }


async def seed(database_url: str, pairs: list[Pair], vectors: np.ndarray, total: int) -> None:
    """`total` memories of USER in the anonymous tenant: the pairs' facts with their real vectors,
    then synthetic ones."""
    from gateway.services.memory_core import new_memory_id
    from gateway.store import utcnow
    from gateway.store.database import Database
    from gateway.store.memories import Change, MemoryStore, Scope
    from gateway.store.owned import Owner

    real = min(len(pairs), total)
    others = filler(total - real, vectors.shape[1])
    texts = [p.fact for p in pairs[:real]] + [f"Note {i}: an earlier remark." for i in range(len(others))]
    rows = np.concatenate([vectors[:real], others]) if len(others) else vectors[:real]
    database = Database(database_url)
    try:
        changes = [
            Change("ADD", new_memory_id(), new_memory_id(), text=text, vector=row.tobytes(),
                   scope=Scope(user_id=USER))
            for text, row in zip(texts, rows, strict=True)
        ]  # fmt: skip
        await MemoryStore(database).apply(Owner(None), changes, at=utcnow())
    finally:
        await database.engine.dispose()


async def _first_token(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[float | None, int]:
    """Seconds to the first content delta of one streamed chat (None on an error), and how many
    memories the gateway says it placed (its `x-tantra-memory` header)."""
    began = time.perf_counter()
    headers = {"content-type": "application/json"}
    async with session.post(url, data=orjson.dumps(body), headers=headers) as got:
        placed = len([part for part in got.headers.get("x-tantra-memory", "").split(",") if part])
        if got.status != 200:
            await got.read()
            return None, placed
        first: float | None = None
        async for raw in got.content:
            line = raw.strip()
            if first is None and line.startswith(b"data: {"):
                choices = orjson.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - began
        return first, placed


async def alternate(gateway_url: str, questions: list[str], plan: ChatPlan) -> dict[str, Any]:
    """One chat with memory on, then the same with memory off, per question (which goes first
    alternates); TTFTs in ms, and how many memory-on chats had memories placed."""
    url = gateway_url.rstrip("/") + "/v1/chat/completions"
    ttft: dict[str, list[float]] = {"on": [], "off": []}
    errors = {"on": 0, "off": 0}
    placed = {"on": 0, "off": 0}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for number in range(plan.warmup + plan.chats):
            question = questions[number % len(questions)]
            for side in ("on", "off") if number % 2 == 0 else ("off", "on"):
                body = chat_body(plan.max_tokens, stream=True, text=question)
                if side == "on":
                    body["user"] = USER
                seconds, memories = await _first_token(session, url, body)
                if number < plan.warmup:
                    continue
                placed[side] += memories > 0
                if seconds is None:
                    errors[side] += 1
                else:
                    ttft[side].append(seconds * 1000)
    return {"ttft_ms": ttft, "errors": errors, "placed": placed}


def measure(  # noqa: PLR0913 -- the run's cores, engines and data, as the other parts take them
    logs: Path,
    engine_cpus: list[int],
    gateway_cpus: list[int],
    embedding_url: str | None,
    pairs: list[Pair],
    vectors: np.ndarray,
    plan: ChatPlan,
    progress: Any = print,
    chat_url: str | None = None,
) -> dict[str, Any]:
    """Start the chat engine (unless `chat_url` is one) and a gateway over it and `embedding_url`
    (none with the static model), seed, alternate, then time the memory path's own parts alone.
    `vectors`: the pairs' facts as `plan.embedding_model` embeds them."""
    with contextlib.ExitStack() as stack:
        if chat_url is None:
            from engine.checkpoint import ensure_checkpoint

            checkpoint = servers.ROOT / ".cache" / "checkpoints" / "tiny"
            checkpoint = ensure_checkpoint(checkpoint, preset="tiny", seed=0)
            engine, chat_url = _engine("memory-chat-engine", logs, engine_cpus, model_dir=checkpoint,
                                       served_model_name=MODEL, cpu_cores=str(engine_cpus[0]))  # fmt: skip
            progress("bench: memory chat: starting vLLM on the tiny checkpoint")
            stack.enter_context(engine)
        settings = gateway_settings(logs / "memory-state", chat_url, embedding_url, plan.embedding_model)
        # A Redis as deployed: the gateway keeps its scopes' row numbers under versions in it
        # (docs/memory.md); without one it is `memory://`, the same cache in its own process.
        redis = servers.redis(logs, gateway_cpus)
        settings["TANTRA_REDIS_URL"] = "memory://" if redis is None else redis[1]
        if redis is not None:
            stack.enter_context(redis[0])
        gateway, gateway_url = servers.tantra(logs, "tantra-memory", chat_url, settings, gateway_cpus)
        stack.enter_context(gateway)
        database = settings["TANTRA_DATABASE_URL"]
        asyncio.run(seed(database, pairs, vectors, plan.memories))
        progress(f"bench: memory chat: {plan.memories} memories seeded; alternating on/off")
        found = asyncio.run(alternate(gateway_url, [p.question for p in pairs], plan))
        parts = asyncio.run(path_parts(embedding_url, database, [p.question for p in pairs][:20]))
        # Questions no chat asked (the query vector cache would answer the others).
        parts["search_p50_ms"] = asyncio.run(search_p50(gateway_url, [p.question for p in pairs][-20:]))
    return {**summarise(found, plan), "embedding_model": plan.embedding_model, "parts": parts}


async def path_parts(embedding_url: str | None, database_url: str, questions: list[str]) -> dict[str, float]:
    """p50 ms of two parts of the memory path, each alone: one query's embedding straight from the
    engine (or the static model's in process, without `embedding_url`), and reading the row numbers
    of the user's unexpired memories from the SQLite store (what the search is limited to; the
    gateway does it while the embedding is computed)."""
    from gateway.store import utcnow
    from gateway.store.database import Database
    from gateway.store.memories import MemoryStore, Scope
    from gateway.store.owned import Owner

    embed: list[float] = []
    async with aiohttp.ClientSession() as session:
        for question in questions:
            began = time.perf_counter()
            if embedding_url is None:
                memory_static.embed([question])
                embed.append((time.perf_counter() - began) * 1000)
                continue
            body = {"model": EMBEDDING_MODEL, "input": [question]}
            async with session.post(embedding_url + "/v1/embeddings", json=body) as answer:
                await answer.read()
            embed.append((time.perf_counter() - began) * 1000)
    database = Database(database_url)
    read: list[float] = []
    try:
        store = MemoryStore(database)
        for _ in range(min(10, len(questions))):
            began = time.perf_counter()
            await store.seqs_in_scope(Owner(None), Scope(user_id=USER), live_at=utcnow())
            read.append((time.perf_counter() - began) * 1000)
    finally:
        await database.engine.dispose()
    return {"embed_p50_ms": percentile(embed, 50), "scope_seqs_p50_ms": percentile(read, 50)}


async def search_p50(gateway_url: str, questions: list[str]) -> float:
    """p50 ms of the memory path's recall through the gateway's memory search API (the query's
    embedding by the memory model, the scope's rows, the index search, the hits' rows from SQL): what
    a memory-on chat does before it is sent, without the chat."""
    url = gateway_url.rstrip("/") + "/v2/memories/search/"
    times: list[float] = []
    async with aiohttp.ClientSession() as session:
        for question in questions:
            body = {"query": question, "filters": {"user_id": USER}, "top_k": 5}
            began = time.perf_counter()
            async with session.post(url, json=body) as answer:
                await answer.read()
                answer.raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
    return percentile(times, 50)


def summarise(found: dict[str, Any], plan: ChatPlan) -> dict[str, Any]:
    on, off = found["ttft_ms"]["on"], found["ttft_ms"]["off"]
    row: dict[str, Any] = {
        "memories": plan.memories,
        "chats": plan.chats,
        "errors": found["errors"],
        "with_memories_placed": found["placed"],
    }
    for side, values in (("on", on), ("off", off)):
        row[f"{side}_p50_ms"] = percentile(values, 50) if values else None
        row[f"{side}_p99_ms"] = percentile(values, 99) if values else None
    if on and off:
        row["added_p50_ms"] = row["on_p50_ms"] - row["off_p50_ms"]
        row["added_p99_ms"] = row["on_p99_ms"] - row["off_p99_ms"]
    row["ttft_ms"] = found["ttft_ms"]
    return row
