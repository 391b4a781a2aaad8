"""The cost curve's load client: N streamed chats held open, in processes of their own.

Why not `bench/load.py` as is: at 1,024 streams one client process parsing every event as JSON is
the bottleneck before the gateway is. Here each process runs its share of the streams on uvloop
with aiohttp and only finds the token events in the bytes (no JSON), timestamping each as its
chunk arrives; several processes split the streams. Each process also reports its own CPU time
over the measured window, so a run can show the client was not what limited it.

Times are `time.monotonic()`, which every process on the host shares: the parent hands each child
the absolute start of the ramp, of the window and of its end.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

_TOKEN_MARK = b'"content"'


@dataclass(frozen=True)
class Share:
    """One client process's part of a cell: how many streams, to where, and when."""

    url: str
    model: str
    streams: int
    tokens: int
    ramp_from: float
    window_from: float
    window_to: float
    seed: int = 0


@dataclass
class ShareResult:
    """What one process saw inside the window: token gaps, first-token times, counts, its CPU."""

    itls: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tokens: int = 0
    streams_done: int = 0
    errors: int = 0
    first_error: str = ""
    cpu_s: float = 0.0


def run_share(share: Share) -> ShareResult:
    """A child process's entry point: raise the fd limit, then hold `share.streams` streams open."""
    raise_fd_limit()
    import uvloop

    return uvloop.run(_run(share))


def raise_fd_limit() -> int:
    """The soft open-files limit raised to the hard one (each stream is a socket); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


async def _run(share: Share) -> ShareResult:
    result = ShareResult()
    body = orjson.dumps(
        {
            "model": share.model,
            "messages": [{"role": "user", "content": "Say something long."}],
            "max_tokens": share.tokens,
            "stream": True,
        }
    )
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=max(120.0, share.window_to - time.monotonic() + 60))
    cpu: dict[str, float] = {}
    rng = random.Random(share.seed)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        loop.call_at(_loop_time(loop, share.window_from), lambda: cpu.setdefault("from", _cpu()))
        loop.call_at(_loop_time(loop, share.window_to), lambda: cpu.setdefault("to", _cpu()))

        async def worker() -> None:
            # Opening every stream in the same instant measures a connect storm, not a steady state.
            await asyncio.sleep(max(0.0, share.ramp_from - time.monotonic()) + rng.random() * 0.5)
            while time.monotonic() < share.window_to:
                await _stream(session, share, body, result)

        await asyncio.gather(*(worker() for _ in range(share.streams)))
    result.cpu_s = cpu.get("to", _cpu()) - cpu.get("from", 0.0)
    return result


def _loop_time(loop: asyncio.AbstractEventLoop, monotonic_at: float) -> float:
    return loop.time() + max(0.0, monotonic_at - time.monotonic())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _stream(session: aiohttp.ClientSession, share: Share, body: bytes, result: ShareResult) -> None:
    started = time.monotonic()
    last: float | None = None
    seen = 0
    try:
        async with session.post(
            share.url + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"status {response.status}: {(await response.read())[:120]!r}")
            async for chunk in response.content.iter_any():
                now = time.monotonic()
                count = chunk.count(_TOKEN_MARK)
                if not count:
                    continue
                inside = share.window_from <= now < share.window_to
                if last is None and inside:
                    result.ttfts.append(now - started)
                elif last is not None and inside:
                    result.itls.append(now - last)
                    # Tokens that arrived in one read were relayed together: their gaps are 0.
                    result.itls.extend([0.0] * (count - 1))
                if inside:
                    result.tokens += count
                last, seen = now, seen + count
        if seen != share.tokens:
            raise RuntimeError(f"{seen} tokens of {share.tokens}")
        if share.window_from <= time.monotonic() < share.window_to:
            result.streams_done += 1
    except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
        result.errors += 1
        result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"[:200]
        await asyncio.sleep(0.1)  # a failing target is not hammered in a tight loop


def merge(results: list[ShareResult]) -> dict[str, Any]:
    """Every process's results as one cell's raw numbers."""
    return {
        "itls": [gap for r in results for gap in r.itls],
        "ttfts": [t for r in results for t in r.ttfts],
        "tokens": sum(r.tokens for r in results),
        "streams_done": sum(r.streams_done for r in results),
        "errors": sum(r.errors for r in results),
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "client_cpu_s": sum(r.cpu_s for r in results),
        "client_processes": len(results),
    }
