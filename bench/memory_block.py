"""What the placed memory block costs the chat engine itself (docs/memory.md, "Memory in chat: where
the time went"): the bench's tiny chat engine, no gateway, streamed chats of the chat row's questions
alternating with and without the system message memory in chat places (its intro and five of the
retrieval set's facts, cut to the token budget as `gateway/services/memory_chat.py` cuts them).

    .venv/bin/python -m bench.memory_block [--chats 40]

Prints TTFT p50 ms of each side, their difference, and the prompt tokens the engine counted for each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.batch_latency import chat_body
from bench.memory_chat import _engine
from bench.memory_set import retrieval_set
from bench.stats import percentile


def block(facts: list[str]) -> str:
    """The system message memory in chat places for these facts, best first."""
    from gateway.services.memory_chat import ChatMemoryOptions, placed_block

    return placed_block(facts, ChatMemoryOptions().token_budget)


async def _first(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, int]:
    """Seconds to the first content delta, and the prompt tokens the engine counted."""
    body = {**body, "stream_options": {"include_usage": True}}
    began = time.perf_counter()
    first: float | None = None
    prompt = 0
    headers = {"content-type": "application/json"}
    async with session.post(url, data=orjson.dumps(body), headers=headers) as got:
        got.raise_for_status()
        async for raw in got.content:
            line = raw.strip()
            if not line.startswith(b"data: {"):
                continue
            chunk = orjson.loads(line[6:])
            choices = chunk.get("choices") or [{}]
            if first is None and choices[0].get("delta", {}).get("content"):
                first = time.perf_counter() - began
            if chunk.get("usage"):
                prompt = int(chunk["usage"]["prompt_tokens"])
    assert first is not None
    return first, prompt


async def alternate(engine_url: str, chats: int, warmup: int = 4) -> dict[str, Any]:
    pairs = retrieval_set(1200)
    url = engine_url.rstrip("/") + "/v1/chat/completions"
    ttft: dict[str, list[float]] = {"with": [], "without": []}
    tokens: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        for number in range(warmup + chats):
            question = pairs[number].question
            placed = block([p.fact for p in pairs[number : number + 5]])
            for side in ("with", "without") if number % 2 == 0 else ("without", "with"):
                body = chat_body(4, stream=True, text=question)
                if side == "with":
                    body["messages"] = [{"role": "system", "content": placed}, *body["messages"]]
                seconds, prompt = await _first(session, url, body)
                if number >= warmup:
                    ttft[side].append(seconds * 1000)
                    tokens[side] = prompt
    result: dict[str, Any] = {f"{side}_p50_ms": round(percentile(v, 50), 1) for side, v in ttft.items()}
    result["added_p50_ms"] = round(result["with_p50_ms"] - result["without_p50_ms"], 1)
    result["prompt_tokens_last"] = tokens
    result["chats"] = chats
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_block", description=__doc__)
    parser.add_argument("--chats", type=int, default=40)
    args = parser.parse_args(argv)
    from bench.batch_latency import MODEL
    from bench.run import Cores
    from engine.checkpoint import ensure_checkpoint

    cores = Cores()
    logs = servers.ROOT / ".cache" / "bench" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    checkpoint = ensure_checkpoint(servers.ROOT / ".cache" / "checkpoints" / "tiny", preset="tiny", seed=0)
    with contextlib.ExitStack() as stack:
        engine, url = _engine("memory-block-engine", logs, cores.all, model_dir=checkpoint,
                              served_model_name=MODEL, cpu_cores=str(cores.all[0]))  # fmt: skip
        stack.enter_context(engine)
        load = os.getloadavg()[0]
        result = asyncio.run(alternate(url, args.chats))
    result["load_average_start"] = round(load, 1)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
