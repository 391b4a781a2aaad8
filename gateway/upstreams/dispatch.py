"""Getting a request answered: the model's upstreams, then its fallbacks, each with retries.

Everything here happens before the client has been sent a byte, so any failure may still be
hidden: another replica (retries with backoff, within the budget), another model of the fallback
chain, and only then the error. A stream counts as answered at its first event (its first token),
so a hung upstream is caught by the time-to-first-token clock and the request moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from gateway.errors import APIError, EngineTimeout, EngineUnavailable
from gateway.observability.metrics import GatewayMetrics
from gateway.upstreams.affinity import affinity_key
from gateway.upstreams.attempt import Attempt, Target
from gateway.upstreams.coldstart import ColdStart
from gateway.upstreams.failover import Failover, can_continue
from gateway.upstreams.http_api import read_body
from gateway.upstreams.interface import UpstreamAnswer
from gateway.upstreams.pool import Member, UpstreamPool
from gateway.upstreams.retry import BackoffWait, RetryBudget, UpstreamFailed
from gateway.upstreams.stream import UpstreamRequest, UpstreamStream
from gateway.upstreams.timeouts import Deadline, Timeouts

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff_s: float
    backoff_max_s: float


class Dispatcher:
    def __init__(
        self,
        pool: UpstreamPool,
        *,
        budget: RetryBudget,
        retry: Callable[[], RetryPolicy],
        timeouts: Callable[[], Timeouts],
        metrics: GatewayMetrics | None = None,
        cold_start: ColdStart | None = None,
    ) -> None:
        self.pool = pool
        self.budget = budget
        self._retry = retry
        self._timeouts = timeouts
        self.metrics = metrics
        self._cold_start = cold_start

    def plan(self, model: str) -> list[Target]:
        """The model, then its fallbacks in order (each with its own upstreams and timeouts)."""
        names = [model]
        route = self.pool.route(model)
        if route is not None:
            names += [name for name in route.fallbacks if name != model]
        targets = []
        for name in names:
            route = self.pool.route(name)
            timeouts = self._timeouts().with_override(route.timeouts if route else None)
            served = (route.served_name if route else None) or name
            targets.append(Target(name, served, self.pool.members_for(name), timeouts))
        return targets

    async def _held_plan(self, model: str) -> list[Target]:
        """The plan, once the model has an engine: scaled to zero, the request waits (bounded) for
        discovery to find one (gateway/upstreams/coldstart.py), unless a fallback can answer now."""
        plan = self.plan(model)
        if self._cold_start is not None and not any(target.members for target in plan):
            await self._cold_start.hold(model)
            plan = self.plan(model)
        return plan

    async def stream(self, request: UpstreamRequest) -> UpstreamStream:
        """The request's stream, open at its first event: the model's plan (its fallbacks after it),
        the pool's choice of replica, retries before the first byte; a failover ready when the
        request allows it and its stream could be stitched from two generations."""
        plan = await self._held_plan(request.model)
        deadline = Deadline(plan[0].timeouts.total_s)
        affinity = affinity_key(request.path, request.payload, request.affinity_chars)
        attempt = await self.open_stream(
            request.path, request.body, request.headers, plan, deadline, affinity=affinity
        )
        failover = None
        if request.failover_max > 0 and can_continue(request.path, request.payload):
            failover = Failover(self, request, plan=plan, deadline=deadline, affinity=affinity)
        return UpstreamStream(
            attempt, inter_token_s=attempt.target.timeouts.inter_token_s, deadline=deadline, failover=failover
        )

    async def answer(self, request: UpstreamRequest) -> tuple[bytes, str, str]:
        """A whole non-streamed answer, the upstream that gave it, and the model of the chain it
        answered as (the request's, or a fallback's: the one the answer is priced by)."""
        plan = await self._held_plan(request.model)
        deadline = Deadline(plan[0].timeouts.total_s)
        affinity = affinity_key(request.path, request.payload, request.affinity_chars)
        body, member, target = await self.complete(
            request.path, request.body, request.headers, plan, deadline, affinity=affinity
        )
        return body, member.name, target.model

    async def open_stream(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        plan: list[Target],
        deadline: Deadline,
        *,
        affinity: str | None = None,
        avoid: Collection[str] = (),
    ) -> Attempt:
        async def attempt(member: Member, target: Target, payload: bytes, sent: dict[str, str]) -> Attempt:
            return await self._open(member, target, path, payload, sent, deadline)

        return await self._answer(plan, body, headers, deadline, affinity, avoid, attempt)

    async def complete(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        plan: list[Target],
        deadline: Deadline,
        *,
        affinity: str | None = None,
    ) -> tuple[bytes, Member, Target]:
        """A whole non-streamed answer: every failure comes before the client's first byte."""

        async def attempt(
            member: Member, target: Target, payload: bytes, sent: dict[str, str]
        ) -> tuple[bytes, Member, Target]:
            return await self._read_whole(member, target, path, payload, sent, deadline), member, target

        return await self._answer(plan, body, headers, deadline, affinity, (), attempt)

    async def _answer(
        self,
        plan: list[Target],
        body: bytes,
        headers: dict[str, str],
        deadline: Deadline,
        affinity: str | None,
        avoid: Collection[str],
        attempt: Callable[[Member, Target, bytes, dict[str, str]], Awaitable[T]],
    ) -> T:
        self.budget.request()
        policy = self._retry()
        last: APIError | None = None
        sent_count = 0
        for target in plan:
            # The body names the model the client asked for (plan[0]); other names need a new body.
            payload = body if target.served == plan[0].model else _renamed(body, target.served)
            failed = set(avoid)

            async def once(target: Target = target, payload: bytes = payload, failed: set[str] = failed) -> T:
                nonlocal sent_count
                member = self.pool.choose(target.members, affinity, failed)
                # vLLM needs each live request's id to be unique: a retry gets its own.
                sent = _numbered(headers, str(sent_count)) if sent_count else headers
                sent_count += 1
                try:
                    return await attempt(member, target, payload, sent)
                except UpstreamFailed:
                    failed.add(member.name)
                    raise

            try:
                try:
                    return await once()  # the common case, without any retry machinery
                except UpstreamFailed as first:
                    if not first.retryable:
                        raise
                    return await self._retry_more(first, once, policy, deadline)
            except UpstreamFailed as exc:
                # A 404 is the upstream not serving this model (or path) under that name, which
                # the next model of the chain may: other client errors would fail there too.
                if not exc.retryable and exc.error.status != 404:
                    raise exc.error from None
                last = exc.error
            except EngineUnavailable as exc:  # every breaker open, or every upstream full
                last = exc
            except APIError as exc:
                if exc.status != 503:
                    raise
                last = exc
        assert last is not None
        raise last

    async def _retry_more(
        self, first: UpstreamFailed, once: Callable[[], Awaitable[T]], policy: RetryPolicy, deadline: Deadline
    ) -> T:
        """Tries 2..attempts after a retryable failure, each after a backoff, within the budget."""

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number + 1 >= policy.attempts or deadline.left() <= 0:
                return True
            return not self.budget.try_spend()  # spent only when a retry will really happen

        def counted(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, UpstreamFailed):
                self._count_retry(exc)

        if policy.attempts <= 1 or deadline.left() <= 0 or not self.budget.try_spend():
            raise first
        self._count_retry(first)
        backoff = BackoffWait(policy.backoff_s, policy.backoff_max_s, first_attempt=2)
        await asyncio.sleep(backoff.seconds(1, first.retry_after_s))
        retrying = AsyncRetrying(
            stop=stop,
            wait=backoff,
            retry=retry_if_exception(lambda exc: isinstance(exc, UpstreamFailed) and exc.retryable),
            before_sleep=counted,
            reraise=True,
        )
        async for trial in retrying:
            with trial:
                return await once()
        raise first  # not reached: tenacity re-raises the last failure

    def _count_retry(self, failure: UpstreamFailed) -> None:
        if self.metrics is not None:
            self.metrics.upstream_retries.labels(failure.upstream).inc()

    async def _open(
        self,
        member: Member,
        target: Target,
        path: str,
        body: bytes,
        headers: dict[str, str],
        deadline: Deadline,
    ) -> Attempt:
        member.take()
        response: UpstreamAnswer | None = None
        ttft = target.timeouts.ttft_s
        try:
            async with asyncio.timeout(deadline.cap(ttft)):
                response = await member.upstream.open(
                    path, body, headers, connect_timeout_s=target.timeouts.connect_s
                )
                chunks = response.aiter_raw()
                first = await anext(chunks)
        except TimeoutError:
            error: APIError = EngineTimeout(f"The upstream sent no token within {ttft:g}s.")
        except StopAsyncIteration:
            error = EngineUnavailable("The upstream ended its answer before its first token.")
        except httpx.TimeoutException:
            error = EngineTimeout("The upstream did not answer in time.")
        except httpx.HTTPError:
            error = EngineUnavailable("The upstream broke off its answer before its first token.")
        except APIError as exc:
            error = exc
        except BaseException:
            await _abandon(member, response)
            raise
        else:
            member.breaker.success()
            return Attempt(member, target, response, chunks, first)
        raise await _failed(member, response, error)

    async def _read_whole(
        self,
        member: Member,
        target: Target,
        path: str,
        body: bytes,
        headers: dict[str, str],
        deadline: Deadline,
    ) -> bytes:
        member.take()
        response: UpstreamAnswer | None = None
        total = target.timeouts.total_s
        try:
            async with asyncio.timeout(deadline.cap(total)):
                response = await member.upstream.open(
                    path, body, headers, connect_timeout_s=target.timeouts.connect_s
                )
                answer = await read_body(response)
        except TimeoutError:
            error: APIError = EngineTimeout(f"The upstream did not finish its answer within {total:g}s.")
        except APIError as exc:
            error = exc
        except BaseException:
            await _abandon(member, response)
            raise
        else:
            member.breaker.success()
            member.give_back()
            return answer
        raise await _failed(member, response, error)


async def _failed(member: Member, response: UpstreamAnswer | None, error: APIError) -> UpstreamFailed:
    failure = UpstreamFailed(error, upstream=member.name, retry_after_s=error.retry_after_s)
    if failure.counts_against_upstream:
        await _abandon(member, response, failed=error.message)
    else:
        member.breaker.success()  # it answered: a 4xx or a 429 says nothing against its health
        await _abandon(member, response)
    return failure


async def _abandon(member: Member, response: UpstreamAnswer | None, *, failed: str | None = None) -> None:
    if response is not None:
        with anyio.CancelScope(shield=True), contextlib.suppress(httpx.HTTPError):
            await response.aclose()
    if failed is not None:
        member.breaker.failure(failed)
    member.give_back()


def _numbered(headers: dict[str, str], suffix: str) -> dict[str, str]:
    return {**headers, "x-request-id": f"{headers.get('x-request-id', 'tantra')}-{suffix}"}


def _renamed(body: bytes, model: str) -> bytes:
    payload: dict[str, Any] = orjson.loads(body)
    payload["model"] = model
    return orjson.dumps(payload)
