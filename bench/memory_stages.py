"""The recall of memory in chat, stage by stage, inside one gateway process (docs/memory.md, "Memory in
chat: where the time went"): the bench's 10k-memory user in a SQLite store, searched through the
memory search API in process (ASGI, no HTTP), the static query model, Redis as `memory://`; each
stage of `MemoryCore.search` timed by wrapping it. No chat engine: the upstream is never called.

    .venv/bin/python -m bench.memory_stages [--memories 10000] [--searches 60]

Prints p50 ms per stage: the scope's rows, the query's vector (side by side with the rows), the index
search, the hits' rows, the whole search, and the API request around it; then the work a memory-on chat
does besides the search, each timed alone on the same store (docs/memory.md, "Off the first byte"):
the query's ledger row (`Tab.close`, a buffered append), the recall's record for the panel (a SQL
write) and the extraction job's submission (a SQL write).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from bench import memory_static
from bench.memory_chat import USER, gateway_settings, seed
from bench.memory_set import retrieval_set
from bench.stats import percentile

STAGES = ("scope rows", "query vector", "index search", "hits' rows", "search")
# The work a memory-on chat does besides the search: before its first byte, or after its body?
BESIDES = ("ledger row", "recall record", "extraction job")


def _timed(times: dict[str, list[float]], name: str, call: Callable[..., Awaitable[Any]]) -> Any:
    @functools.wraps(call)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            times[name].append((time.perf_counter() - began) * 1000)

    return wrapper


async def run(memories: int, searches: int) -> dict[str, float]:
    from gateway import Settings, create_app
    from gateway.limits.accounting import Tab

    pairs = retrieval_set(1200)
    vectors = memory_static.embed([p.fact for p in pairs])
    with tempfile.TemporaryDirectory() as tmp:
        env = gateway_settings(Path(tmp), "http://127.0.0.1:9", None, memory_static.STATIC_MODEL)
        env["TANTRA_REDIS_URL"] = "memory://"
        os.environ.update(env)
        app = create_app(Settings())
        times: dict[str, list[float]] = {name: [] for name in (*STAGES, "request", *BESIDES)}
        async with app.router.lifespan_context(app):  # migrates the store: seeded after
            await seed(env["TANTRA_DATABASE_URL"], pairs, vectors, memories)
            core = app.state.components.memory.core
            core._scope_seqs = _timed(times, "scope rows", core._scope_seqs)
            core._query_vector = _timed(times, "query vector", core._query_vector)
            core.index.search = _timed(times, "index search", core.index.search)
            core.store.by_seqs = _timed(times, "hits' rows", core.store.by_seqs)
            core.search = _timed(times, "search", core.search)
            close = Tab.close

            def timed_close(tab: Tab, **kwargs: Any) -> None:
                began = time.perf_counter()
                close(tab, **kwargs)
                times["ledger row"].append((time.perf_counter() - began) * 1000)

            transport = httpx.ASGITransport(app=app)
            with mock.patch.object(Tab, "close", timed_close):
                async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                    # Distinct questions: the query vector cache would answer a repeated one.
                    questions = [p.question for p in pairs]
                    for number in range(searches + 5):
                        body = {"query": questions[number], "filters": {"user_id": USER}, "top_k": 5}
                        began = time.perf_counter()
                        answer = await client.post("/v2/memories/search/", json=body)
                        answer.raise_for_status()
                        if number < 5:  # warm-up: the index loads, the scope is read once
                            for values in times.values():
                                values.clear()
                            continue
                        times["request"].append((time.perf_counter() - began) * 1000)
            await _besides(app, times, pairs, searches)
    return {name: round(percentile(values, 50), 3) for name, values in times.items() if values}


async def _besides(app: Any, times: dict[str, list[float]], pairs: list[Any], searches: int) -> None:
    """Time, one call at a time, the ledger row of a query's embedding (the searches above wrote
    theirs through the wrapped `Tab.close`), the recall's record and the extraction job's submission."""
    from gateway.services.memory_chat import placed_block
    from gateway.services.memory_core import Caller, Found
    from gateway.store.owned import Owner

    chat = app.state.components.services.inference.memory
    core = chat.core
    hits = await core.store.by_seqs.__wrapped__(Owner(None), list(range(1, 6)))  # not a search's
    found = [Found(memory, 0.5) for memory in hits.values()]
    used = [(f.memory.id, f.score) for f in found]
    block = placed_block([f.memory.memory for f in found], chat.options.token_budget)
    messages = [{"role": "user", "content": p.question} for p in pairs[:1]]
    for number in range(searches + 5):
        caller = Caller(Owner(None), f"req-besides-{number}")
        began = time.perf_counter()
        await chat._record(caller, USER, found, used, block, len(block) // 4 + 1)
        if number >= 5:
            times["recall record"].append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        await chat._submit(None, None, USER, messages, f"req-besides-{number}")
        if number >= 5:
            times["extraction job"].append((time.perf_counter() - began) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_stages", description=__doc__)
    parser.add_argument("--memories", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=60)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    result = asyncio.run(run(args.memories, args.searches))
    print(json.dumps({"p50_ms": result, "load_average_start": round(load, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
