"""Readiness that a hung engine cannot fool: each upstream must generate one token, in time.

A background loop probes every `interval_s`: the engine's /health, then a one-token completion
for the model it serves, each bounded by `timeout_s`. A dead engine fails the first, a frozen or
wedged one (its HTTP server answering while its core does not) fails the second. /readyz only
reads the cached verdict, so probes cost nothing however often they come, and a verdict older
than `interval_s + timeout_s` is itself a failure (the loop is stuck).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.observability.metrics import GatewayMetrics

_log = logging.getLogger("tantra.health")

Check = Callable[[], Awaitable[None]]


@dataclass
class UpstreamHealth:
    healthy: bool = False
    checked_at: float = float("-inf")
    latency_s: float | None = None
    model: str | None = None
    reason: str | None = "not checked yet"


@dataclass
class HealthReport:
    ready: bool
    upstreams: dict[str, dict[str, Any]] = field(default_factory=dict)
    dependencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The problems and each failing upstream's reason, in one line for an error message."""
        reasons = [
            f"{name}: {state['reason']}" for name, state in self.upstreams.items() if not state["healthy"]
        ]
        return "; ".join(self.problems) + (f" ({'; '.join(reasons)})" if reasons else "")

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unavailable",
            "upstreams": self.upstreams,
            "dependencies": self.dependencies,
            "problems": self.problems,
        }


class HealthMonitor:
    """Probes upstreams and dependencies off the request path; answers readiness from memory.

    `upstreams` maps a name to the engine's base URL; `models` maps a served model to the upstreams
    that serve it (learned from each engine's /v1/models when not configured). `dependencies` are
    named checks (the store, Redis under a fail-closed policy) that raise when unreachable.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        upstreams: Mapping[str, str],
        *,
        interval_s: float,
        timeout_s: float,
        default_model: str | None = None,
        dependencies: Mapping[str, Check] | None = None,
        metrics: GatewayMetrics | None = None,
        deep: bool = True,
    ) -> None:
        self._client = client
        self.upstreams = dict(upstreams)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.default_model = default_model
        self.deep = deep
        self._dependencies = dict(dependencies or {})
        self._metrics = metrics
        self.state: dict[str, UpstreamHealth] = {name: UpstreamHealth() for name in self.upstreams}
        self.dependency_state: dict[str, UpstreamHealth] = {
            name: UpstreamHealth() for name in self._dependencies
        }
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._first_round = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="tantra-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def reconfigure(
        self, upstreams: Mapping[str, str], default_model: str | None, interval_s: float, timeout_s: float
    ) -> None:
        """A live reload: new upstreams start unhealthy until probed; the loop is woken at once."""
        self.upstreams = dict(upstreams)
        self.state = {name: self.state.get(name, UpstreamHealth()) for name in self.upstreams}
        self.default_model = default_model
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self._wake.set()

    def report(self) -> HealthReport:
        now = time.monotonic()
        stale_after = self.interval_s + self.timeout_s * 2 + 1.0
        report = HealthReport(ready=True)
        serving = []
        for name, health in self.state.items():
            fresh = now - health.checked_at <= stale_after
            ok = health.healthy and fresh
            report.upstreams[name] = {
                "healthy": ok,
                "model": health.model,
                "latency_ms": round(health.latency_s * 1000, 1) if health.latency_s is not None else None,
                "reason": None if ok else (health.reason if fresh else health.reason or "check is stale"),
                "checked_s_ago": round(now - health.checked_at, 2) if health.checked_at > 0 else None,
            }
            if ok and (self.default_model is None or health.model == self.default_model):
                serving.append(name)
        # Readiness is about the local engines; a gateway fronting only providers has none to wait for.
        if self.state and not serving:
            report.ready = False
            which = f"model {self.default_model!r}" if self.default_model else "the default model"
            report.problems.append(f"no healthy upstream serves {which}")
        for name, health in self.dependency_state.items():
            fresh = now - health.checked_at <= stale_after
            ok = health.healthy and fresh
            report.dependencies[name] = {"reachable": ok, "reason": None if ok else health.reason}
            if not ok:
                report.ready = False
                report.problems.append(f"{name} is not reachable: {health.reason or 'check is stale'}")
        return report

    async def check_now(self) -> None:
        """One round of every probe, concurrently; each result lands in the cache as it comes."""
        await asyncio.gather(
            *(self._probe_upstream(name, url) for name, url in list(self.upstreams.items())),
            *(self._probe_dependency(name, check) for name, check in self._dependencies.items()),
        )

    async def settled(self) -> None:
        """Wait (at most one timeout) for the first round of checks, so that a probe arriving just
        after startup gets a verdict rather than "not checked yet"."""
        if not self._first_round.is_set() and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_round.wait(), timeout=self.timeout_s)

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_now()
            except Exception:  # a probe bug must not end the loop: a stale verdict turns red
                _log.exception("health check round failed")
            self._first_round.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)

    async def _probe_upstream(self, name: str, url: str) -> None:
        started = time.monotonic()
        health = UpstreamHealth(checked_at=started)
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    health.model = await self._generate_one_token(url)
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                    # A pooled keep-alive connection the engine had just closed: once more, on a
                    # fresh one, so that a race does not flap readiness. A hang is not retried.
                    health.model = await self._generate_one_token(url)
            health.healthy = True
            health.reason = None
        except TimeoutError:
            health.reason = f"no answer within {self.timeout_s:g}s (engine hung or overloaded)"
        except httpx.HTTPError as exc:
            health.reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except _ProbeFailed as exc:
            health.reason = str(exc)
        health.latency_s = time.monotonic() - started
        health.checked_at = time.monotonic()
        previous = self.state.get(name)
        if name in self.upstreams:
            self.state[name] = health
        if previous is not None and previous.healthy != health.healthy and previous.checked_at > 0:
            if health.healthy:
                _log.info("upstream %s is healthy again", name)
            else:
                _log.warning("upstream %s is unhealthy: %s", name, health.reason)
        if self._metrics is not None:
            self._metrics.upstream_healthy.labels(name).set(1 if health.healthy else 0)
            self._metrics.health_check_duration.labels(name).observe(health.latency_s)

    async def _generate_one_token(self, url: str) -> str:
        base = url.rstrip("/")
        response = await self._client.get(base + "/health")
        if response.status_code != 200:
            raise _ProbeFailed(f"/health answered {response.status_code}")
        models = await self._client.get(base + "/v1/models")
        data = models.json().get("data") if models.status_code == 200 else None
        if not data:
            raise _ProbeFailed("the engine lists no model")
        ids = [str(card.get("id")) for card in data if isinstance(card, dict)]
        model = self.default_model if self.default_model in ids else ids[0]
        if not self.deep:
            return model
        answer = await self._client.post(
            base + "/v1/completions",
            json={"model": model, "prompt": "ok", "max_tokens": 1, "temperature": 0},
            headers={"x-request-id": f"tantra-health-{time.monotonic_ns()}"},
        )
        if answer.status_code != 200:
            raise _ProbeFailed(f"a one-token completion answered {answer.status_code}")
        if not answer.json().get("choices"):
            raise _ProbeFailed("a one-token completion came back without choices")
        return model

    async def _probe_dependency(self, name: str, check: Check) -> None:
        health = UpstreamHealth(checked_at=time.monotonic())
        try:
            async with asyncio.timeout(self.timeout_s):
                await check()
            health.healthy, health.reason = True, None
        except TimeoutError:
            health.reason = f"no answer within {self.timeout_s:g}s"
        except Exception as exc:
            health.reason = f"{type(exc).__name__}: {exc}"[:300]
        health.checked_at = time.monotonic()
        self.dependency_state[name] = health


class _ProbeFailed(Exception):
    pass
