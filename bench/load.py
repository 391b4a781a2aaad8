"""A closed-loop async load client with per-token timestamps, for the fixed-latency comparisons.

Why not `vllm bench serve` or Locust here: the gateway comparison needs many short,
interleaved cells (three or more targets, six scenarios, several rounds) timed to a
fraction of a millisecond. `vllm bench serve` pays ~8 s of imports per run and has no
notion of alternating targets; Locust's gevent workers add jitter of the same order as
what is measured. This client is one aiohttp session per cell on uvloop, `c` workers
each sending back to back; it records when each request started, its first content
token, every later token, and its end. `vllm bench serve` drives the real-engine
service runs (see `bench/service.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True)
class Scenario:
    """One kind of load: streamed or not, how many requests in flight, tokens per answer."""

    name: str
    stream: bool
    concurrency: int
    tokens: int = 16

    def body(self, model: str) -> bytes:
        request: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": "Say something short."}],
            "max_tokens": self.tokens,
            "ignore_eos": True,
            "temperature": 0,
        }
        if self.stream:
            request["stream"] = True
        return orjson.dumps(request)


@dataclass(frozen=True)
class Target:
    """Where a cell sends its load: the upstream directly, or a gateway in front of it."""

    name: str
    base_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Shot:
    """One request's timings (seconds, monotonic); `error` is None when it succeeded."""

    start: float
    end: float = 0.0
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    @property
    def itls(self) -> list[float]:
        times = self.token_times
        return [later - earlier for earlier, later in itertools.pairwise(times)]


@dataclass
class Cell:
    """All the shots of one target under one scenario, and the window they ran in."""

    target: str
    scenario: Scenario
    shots: list[Shot]
    started: float
    finished: float
    round: int = 0
    cpu_s: float | None = None
    """CPU seconds the target's own server (not the upstream) spent during the cell."""

    @property
    def ok(self) -> list[Shot]:
        return [shot for shot in self.shots if shot.error is None]

    @property
    def throughput(self) -> float:
        """Successful requests per second over the measured window."""
        span = self.finished - self.started
        return len(self.ok) / span if span > 0 else 0.0

    def top_error(self) -> str:
        """The most common error of the cell, for the progress line; empty when none failed."""
        errors = [shot.error for shot in self.shots if shot.error]
        return max(set(errors), key=errors.count) if errors else ""

    @property
    def error_rate(self) -> float:
        return (len(self.shots) - len(self.ok)) / len(self.shots) if self.shots else 0.0


async def run_cell(
    target: Target,
    scenario: Scenario,
    *,
    duration_s: float,
    warmup_s: float = 0.3,
    max_requests: int = 100_000,
    timeout_s: float = 120.0,
) -> Cell:
    """Closed loop: `concurrency` workers send back to back for `duration_s` after a warm-up.

    Each worker's first request, and any started during the warm-up, are not recorded
    (connections open, caches fill). Every worker records at least one request, so a
    target slower than the window still gets measured at full concurrency; the loop is
    bounded by time, by `max_requests`, and by `timeout_s` per request.
    """
    url = target.base_url.rstrip("/") + "/v1/chat/completions"
    headers = {"content-type": "application/json", **target.headers}
    body = scenario.body(target.model)
    # Idle connections are dropped before uvicorn's default 5 s keep-alive (Tantra, LiteLLM and vLLM
    # all run uvicorn) closes them, so a reused connection is never one the server is closing.
    connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=3)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    shots: list[Shot] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop_start = time.perf_counter()
        measure_from = loop_start + warmup_s
        deadline = measure_from + duration_s

        async def worker() -> None:
            await _send(session, url, headers, body, scenario.stream)
            recorded = 0
            while len(shots) < max_requests:
                if time.perf_counter() >= deadline and recorded:
                    return
                shot = await _send(session, url, headers, body, scenario.stream)
                if shot.start >= measure_from or time.perf_counter() >= deadline:
                    shots.append(shot)
                    recorded += 1

        await asyncio.gather(*(worker() for _ in range(scenario.concurrency)))
        started = min((shot.start for shot in shots), default=measure_from)
        finished = max((shot.end for shot in shots), default=deadline)
    return Cell(target.name, scenario, shots, started, finished)


async def _send(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, stream: bool
) -> Shot:
    shot = Shot(start=time.perf_counter())
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                shot.error = f"status {response.status}"
            elif stream:
                await _read_stream(response, shot)
            else:
                payload = orjson.loads(await response.read())
                if not payload.get("choices"):
                    shot.error = "no choices"
                shot.first_token = time.perf_counter()
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
        shot.error = f"{type(exc).__name__}: {exc}"[:160]
    shot.end = time.perf_counter()
    return shot


async def _read_stream(response: aiohttp.ClientResponse, shot: Shot) -> None:
    """Timestamp each content token as its bytes arrive; an error event or no [DONE] fails the shot."""
    parser = SSEParser()
    async for data in response.content.iter_any():
        now = time.perf_counter()
        for event in parser.feed(data):
            if event == b"[DONE]":
                return
            kind = classify_event(event)
            if kind == "error":
                shot.error = "error event"
            elif kind == "token":
                if shot.first_token is None:
                    shot.first_token = now
                shot.token_times.append(now)
    shot.error = shot.error or "stream ended without [DONE]"


class SSEParser:
    """Splits a byte stream into the payloads of its `data:` lines, across any chunking."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        events: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                crlf = self._buffer.find(b"\r\n\r\n")
                if crlf < 0:
                    return events
                block, self._buffer = self._buffer[:crlf], self._buffer[crlf + 4 :]
            else:
                block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            for line in block.splitlines():
                if line.startswith(b"data:"):
                    events.append(line[5:].strip())


def classify_event(payload: bytes) -> str:
    """`token` for a chunk carrying content, `error` for an error event, `other` otherwise."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "error"
    if not isinstance(event, dict):
        return "other"
    if "error" in event:
        return "error"
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or choice.get("text"):
            return "token"
    return "other"
