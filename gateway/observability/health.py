"""Readiness that a hung engine cannot fool: each upstream must generate one token, in time.

A background loop asks every `interval_s` each of the pool's upstreams that has a health endpoint
(the local engines) for its deep check: its /health, then a one-token completion for the model it
serves, together bounded by `timeout_s`. A dead engine fails the first, a frozen or wedged one (its
HTTP server answering while its core does not) fails the second. /readyz only reads the cached
verdict, so probes cost nothing however often they come, and a verdict older than
`interval_s + timeout_s` is itself a failure (the loop is stuck).

Two verdicts (issue 26, point 6): the gateway's own readiness (`ready`: its store, Redis when limits
fail closed) is what /readyz and a load balancer read, so an engine outage leaves the gateway in
its Service answering OpenAI's 503 envelopes with Retry-After; the engines' (`engines_ready`: a
healthy upstream serves the default model) is its own signal, `/readyz?engines=1` and the
`tantra_engines_ready` gauge.

The upstreams are the pool's, read afresh each round: a live reload reconfigures the pool, and the
monitor follows it (woken at once), dropping the verdicts about upstreams that were replaced. The
checks' own settings (`HealthPolicy`) may be a function returning the live ones, read as needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.background import cancelled
from gateway.observability.metrics import GatewayMetrics
from gateway.upstreams.interface import ProbeFailed

if TYPE_CHECKING:
    from gateway.upstreams.interface import Upstream
    from gateway.upstreams.pool import UpstreamPool

_log = logging.getLogger("tantra.health")

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HealthPolicy:
    """How upstreams are checked."""

    interval_s: float
    timeout_s: float  # for one upstream's whole deep check, and one dependency's check
    default_model: str | None = None  # the model readiness requires; None: whatever they serve first
    deep: bool = True  # generate one token: a wedged engine still answers /health


@dataclass
class UpstreamHealth:
    healthy: bool = False
    checked_at: float = float("-inf")
    latency_s: float | None = None
    model: str | None = None
    reason: str | None = "not checked yet"


@dataclass
class HealthReport:
    ready: bool  # the gateway itself: its dependencies
    engines_ready: bool = True  # a healthy upstream serves the default model (or none is local)
    upstreams: dict[str, dict[str, Any]] = field(default_factory=dict)
    dependencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the gateway's own
    engine_problems: list[str] = field(default_factory=list)

    def summary(self, engines: bool = False) -> str:
        """The problems (the engines' too when asked) and each failing upstream's reason, in one
        line for an error message."""
        if not engines:
            return "; ".join(self.problems)
        reasons = [
            f"{name}: {state['reason']}" for name, state in self.upstreams.items() if not state["healthy"]
        ]
        problems = "; ".join([*self.problems, *self.engine_problems])
        return problems + (f" ({'; '.join(reasons)})" if reasons else "")

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unavailable",
            "engines_ready": self.engines_ready,
            "upstreams": self.upstreams,
            "dependencies": self.dependencies,
            "problems": self.problems,
            "engine_problems": self.engine_problems,
        }


class HealthMonitor:
    """Probes upstreams and dependencies off the request path; answers readiness from memory.

    The upstreams are the `pool`'s that have a health endpoint (a provider is left to its breaker:
    a probe completion there would cost money). `policy` is fixed, or a function returning the live
    one. `dependencies` are named checks (the store, Redis under a fail-closed policy) that raise
    when unreachable.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        policy: HealthPolicy | Callable[[], HealthPolicy],
        *,
        dependencies: Mapping[str, Check] | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._dependencies = dict(dependencies or {})
        self._metrics = metrics
        self.state: dict[str, UpstreamHealth] = {}
        self._about: dict[str, Upstream] = {}  # the upstream each verdict in `state` is about
        self.dependency_state: dict[str, UpstreamHealth] = {
            name: UpstreamHealth() for name in self._dependencies
        }
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._first_round = asyncio.Event()
        pool.on_reconfigure(self._wake.set)
        self._follow_pool()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="tantra-health")

    async def close(self) -> None:
        await cancelled(self._task)
        self._task = None

    @property
    def policy(self) -> HealthPolicy:
        return self._policy if isinstance(self._policy, HealthPolicy) else self._policy()

    def _follow_pool(self) -> dict[str, Upstream]:
        """The pool's upstreams to probe now. An upstream the pool added or replaced starts
        unhealthy until probed; verdicts about removed or replaced ones are dropped."""
        upstreams = {
            name: member.upstream
            for name, member in self._pool.members.items()
            if member.upstream.capabilities.has_health_endpoint
        }
        self.state = {
            name: self.state[name] if self._about.get(name) is upstream else UpstreamHealth()
            for name, upstream in upstreams.items()
        }
        self._about = upstreams
        return upstreams

    def report(self) -> HealthReport:
        self._follow_pool()
        policy = self.policy
        now = time.monotonic()
        stale_after = policy.interval_s + policy.timeout_s * 2 + 1.0
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
            if ok and (policy.default_model is None or health.model == policy.default_model):
                serving.append(name)
        # Engine readiness is about the local engines; a gateway fronting only providers has none.
        if (self.state and not serving) or self._pool_empty():
            report.engines_ready = False
            which = f"model {policy.default_model!r}" if policy.default_model else "the default model"
            report.engine_problems.append(f"no healthy upstream serves {which}")
        if self._metrics is not None:
            self._metrics.engines_ready.set(1 if report.engines_ready else 0)
        for name, health in self.dependency_state.items():
            fresh = now - health.checked_at <= stale_after
            ok = health.healthy and fresh
            report.dependencies[name] = {"reachable": ok, "reason": None if ok else health.reason}
            if not ok:
                report.ready = False
                report.problems.append(f"{name} is not reachable: {health.reason or 'check is stale'}")
        return report

    def _pool_empty(self) -> bool:
        """A pool with no member at all (a discovered upstream whose name has no address yet)."""
        return not self._pool.members

    async def check_now(self) -> None:
        """One round of every probe, concurrently; each result lands in the cache as it comes."""
        await asyncio.gather(
            *(self._probe_upstream(name, upstream) for name, upstream in self._follow_pool().items()),
            *(self._probe_dependency(name, check) for name, check in self._dependencies.items()),
        )

    async def settled(self) -> None:
        """Wait (at most one timeout) for the first round of checks, so that a probe arriving just
        after startup gets a verdict rather than "not checked yet"."""
        if not self._first_round.is_set() and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_round.wait(), timeout=self.policy.timeout_s)

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_now()
            except Exception:  # a probe bug must not end the loop: a stale verdict turns red
                _log.exception("health check round failed")
            self._first_round.set()
            self.report()  # the engines' gauge follows each round, not only /readyz's probes
            self._wake.clear()
            # Not wait_for: on 3.11 it loses a cancellation that comes as the wake-up does (a pool
            # reconfiguration right before shutdown), and close() would wait an interval or forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.interval_s):
                    await self._wake.wait()

    async def _probe_upstream(self, name: str, upstream: Upstream) -> None:
        policy = self.policy
        started = time.monotonic()
        health = UpstreamHealth(checked_at=started)
        try:
            async with asyncio.timeout(policy.timeout_s):
                health.model = await upstream.deep_check(policy.default_model, generate=policy.deep)
            health.healthy = True
            health.reason = None
        except TimeoutError:
            health.reason = f"no answer within {policy.timeout_s:g}s (engine hung or overloaded)"
        except ProbeFailed as exc:
            health.reason = str(exc)
        health.latency_s = time.monotonic() - started
        health.checked_at = time.monotonic()
        previous = self.state.get(name)
        if self._about.get(name) is upstream:  # not replaced by a reload while it was probed
            self.state[name] = health
        if previous is not None and previous.healthy != health.healthy and previous.checked_at > 0:
            if health.healthy:
                _log.info("upstream %s is healthy again", name)
            else:
                _log.warning("upstream %s is unhealthy: %s", name, health.reason)
        if self._metrics is not None:
            self._metrics.upstream_healthy.labels(name).set(1 if health.healthy else 0)
            self._metrics.health_check_duration.labels(name).observe(health.latency_s)

    async def _probe_dependency(self, name: str, check: Check) -> None:
        timeout_s = self.policy.timeout_s
        health = UpstreamHealth(checked_at=time.monotonic())
        try:
            async with asyncio.timeout(timeout_s):
                await check()
            health.healthy, health.reason = True, None
        except TimeoutError:
            health.reason = f"no answer within {timeout_s:g}s"
        except Exception as exc:
            health.reason = f"{type(exc).__name__}: {exc}"[:300]
        health.checked_at = time.monotonic()
        self.dependency_state[name] = health
